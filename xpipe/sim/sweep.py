"""Replaying one mix under every run of a sweep, and the four run tables from it.

A partition's sweep (``partition_sweep``) replays every run over the partition's
contents and gives its share of each run (xpipe.sim.partition.PARTS); the merge
(``merge_sweep``) adds the partitions' shares up and summarises each run against
the oracle's (every summary is measured against it). ``replay_sweep`` is both in
one job, over the whole mix as one partition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import polars as pl

from xpipe.io import write_parquet
from xpipe.sim.metrics import prefix_table, summarise
from xpipe.sim.partition import (
    PARTS,
    WHOLE,
    Partition,
    footprints,
    merge_timelines,
    merged_prefix_peaks,
    types_table,
)
from xpipe.sim.replay import DomainTrace, PartReplay, prepare, replay_partition, replay_prepared
from xpipe.sim.runs import RunSpec
from xpipe.sim.tables import PREFIXES, SUMMARY, TIMELINE, TYPES, with_key

log = logging.getLogger(__name__)

ORACLE = RunSpec.make("oracle")


def prefix_peaks(domains: Sequence[DomainTrace], spec: RunSpec, whole: pl.DataFrame) -> list[tuple[int, int]]:
    """(k, peak footprint of the mix's first k domains) for k = 1..n (``whole``: the whole mix's
    timeline, already replayed)."""
    n = len(domains)
    return merged_prefix_peaks(pl.concat([
        footprints(whole if k == n else replay_partition(domains[:k], spec, WHOLE, with_types=False).timeline, k)
        for k in range(1, n + 1)]), n)


def partition_sweep(domains: Sequence[DomainTrace], runs: Sequence[RunSpec], part: Partition,
                    with_prefixes: bool) -> dict[str, pl.DataFrame]:
    """The partition's share of every run: the tables of PARTS by name, each keyed by run id.

    Runs that keep the same snapshots replay the same frames, prepared once (xpipe.sim.replay.prepare)
    for the whole mix and, for domains per host, for each prefix of it (its first k domains).
    """
    _need_oracle(runs)
    n = len(domains)
    whole: dict[RunSpec, PartReplay] = {}
    prefixes: dict[RunSpec, dict[int, pl.DataFrame]] = {spec: {} for spec in runs}
    where = "" if part.whole else f"partition {part.index} of {part.count}: "
    for every in sorted({spec.snapshot_every for spec in runs}):
        group = [spec for spec in runs if spec.snapshot_every == every]
        for k in range(n, 0, -1) if _prefixed(every, with_prefixes) else (n,):
            started = time.perf_counter()
            prepared = prepare(domains[:k], every, part, reuse=len(group) > 1)
            for spec in group:
                result = replay_prepared(prepared, spec, with_types=k == n)
                if k == n:
                    whole[spec] = result
                if _prefixed(every, with_prefixes):
                    prefixes[spec][k] = footprints(result.timeline, k)
            log.info("%ssnapshot_every %d, %s: %d runs replayed in %.1f s", where, every,
                     f"the first {k} of {n} domains" if k < n else f"all {n} domains", len(group),
                     time.perf_counter() - started)
    shares: dict[str, list[pl.DataFrame]] = {t.name: [] for t in PARTS}
    for spec in runs:
        own = {"timeline": whole[spec].timeline, "types": whole[spec].type_counts,
               "prefixes": pl.concat([prefixes[spec][k] for k in range(1, n + 1)])
               if _prefixed(spec.snapshot_every, with_prefixes) else None}
        for name, df in own.items():
            if df is not None:
                shares[name].append(df.with_columns(run=pl.lit(spec.run_id)))
    return {t.name: t.conform(pl.concat(shares[t.name])) if shares[t.name] else pl.DataFrame(schema=t.schema)
            for t in PARTS}


def _prefixed(snapshot_every: int, with_prefixes: bool) -> bool:
    """Whether runs of ``snapshot_every`` replay every prefix of the mix (domains per host): only
    runs of every snapshot, whose peak footprint the capacity is measured on; a sparser run's
    domains_per_host is null."""
    return with_prefixes and snapshot_every == 1


def _need_oracle(runs: Sequence[RunSpec]) -> None:
    if ORACLE not in runs:
        raise ValueError("a sweep needs the oracle run: every summary is measured against it")


def _by_run(shares: Sequence[pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """Every partition's share of one table, by run id (an absent run: no rows)."""
    df = pl.concat(shares)
    return {r: part.drop("run") for (r,), part in df.partition_by("run", as_dict=True).items()}


def merge_sweep(shares: Sequence[dict[str, pl.DataFrame]], runs: Sequence[RunSpec], mix: str, capture: str,
                domains: int, with_prefixes: bool, host_mib: list[int], synthetic: bool) -> dict[str, pl.DataFrame]:
    """The four run tables by name, each holding every run (in display order), from every
    partition's share (``partition_sweep``) of a mix of ``domains`` domains."""
    _need_oracle(runs)
    timelines = _by_run([merge_timelines([s["timeline"] for s in shares], key=("run", "time_s", "domain"))])
    type_counts, prefixes = (_by_run([s[name] for s in shares]) for name in ("types", "prefixes"))
    none = {t.name: pl.DataFrame(schema=t.schema).drop("run") for t in PARTS}
    order = {spec: i for i, spec in enumerate(runs)}
    parts: dict[str, list[pl.DataFrame]] = {t.name: [] for t in (TIMELINE, TYPES, PREFIXES, SUMMARY)}
    oracle_timeline = None
    for spec in sorted(runs, key=lambda s: s != ORACLE):
        if spec.run_id not in timelines:
            raise ValueError(f"run {spec.run_id} is missing from the partitions' timelines")
        timeline = timelines[spec.run_id]
        if spec == ORACLE:
            oracle_timeline = timeline
        peaks = (merged_prefix_peaks(prefixes.get(spec.run_id, none["prefixes"]), domains)
                 if _prefixed(spec.snapshot_every, with_prefixes) else None)
        summary = summarise(timeline, oracle_timeline, peaks, spec.info.has_area, synthetic, host_mib)
        own = {TIMELINE: timeline, TYPES: types_table(type_counts.get(spec.run_id, none["types"])),
               SUMMARY: summary, PREFIXES: prefix_table(peaks, host_mib) if peaks is not None else None}
        for table, df in own.items():
            if df is not None:
                parts[table.name].append(with_key(df, table, spec, mix, capture, order[spec]))
        row = summary.row(0, named=True)
        found = ", ".join(f"{k} {100 * row[k]:.1f}%" for k in ("savings", "io_reduction") if row[k] is not None)
        log.info("%s: run %s: %s", mix, spec.run_id, found or "nothing to measure")
    return {table.name: (pl.concat(parts[table.name]) if parts[table.name] else pl.DataFrame(schema=table.schema))
            .sort("run_order", maintain_order=True) for table in (TIMELINE, TYPES, PREFIXES, SUMMARY)}


def write_tables(tables: dict[str, pl.DataFrame], outputs: dict[str, str]) -> None:
    """Each table to its path (``outputs``: table name -> path)."""
    for name, df in tables.items():
        write_parquet(df, outputs[name])


def replay_sweep(domains: list[DomainTrace], runs: Sequence[RunSpec], mix: str, capture: str,
                 outputs: dict[str, str], with_prefixes: bool, host_mib: list[int], synthetic: bool) -> None:
    """Replay ``domains`` under every run (in display order) in one job and write the four run
    tables (``outputs``: table name -> path), each holding every run."""
    shares = partition_sweep(domains, runs, WHOLE, with_prefixes)
    write_tables(merge_sweep([shares], runs, mix, capture, len(domains), with_prefixes, host_mib, synthetic),
                 outputs)
