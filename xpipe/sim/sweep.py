"""Replaying one mix under every run of a sweep: the oracle first (every summary
is measured against it), then the others; one Parquet file per run table."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import polars as pl

from xpipe.io import write_parquet
from xpipe.sim.metrics import peak_footprint, prefix_table, summarise
from xpipe.sim.replay import DomainTrace, replay
from xpipe.sim.runs import RunSpec
from xpipe.sim.tables import PREFIXES, SUMMARY, TIMELINE, TYPES, with_key

log = logging.getLogger(__name__)

ORACLE = RunSpec.make("oracle")


def prefix_peaks(domains: Sequence[DomainTrace], spec: RunSpec, whole: pl.DataFrame) -> list[tuple[int, int]]:
    """(k, peak footprint of the mix's first k domains) for k = 1..n: the replay of
    every prefix (``whole``: the whole mix's timeline, already replayed)."""
    n = len(domains)
    return [(k, peak_footprint(whole if k == n else replay(domains[:k], spec, with_types=False).timeline))
            for k in range(1, n + 1)]


def replay_sweep(domains: list[DomainTrace], runs: Sequence[RunSpec], mix: str, capture: str,
                 outputs: dict[str, str], with_prefixes: bool, host_mib: list[int], synthetic: bool) -> None:
    """Replay ``domains`` under every run (in display order) and write the four run
    tables (``outputs``: table name -> path), each holding every run."""
    if ORACLE not in runs:
        raise ValueError("a sweep needs the oracle run: every summary is measured against it")
    order = {spec: i for i, spec in enumerate(runs)}
    parts: dict[str, list[pl.DataFrame]] = {t.name: [] for t in (TIMELINE, TYPES, PREFIXES, SUMMARY)}
    oracle_timeline = None
    for n, spec in enumerate(sorted(runs, key=lambda s: s != ORACLE), 1):
        started = time.perf_counter()
        result = replay(domains, spec)
        if spec == ORACLE:
            oracle_timeline = result.timeline
        peaks = prefix_peaks(domains, spec, result.timeline) if with_prefixes else None
        summary = summarise(result.timeline, oracle_timeline, peaks, spec.info.has_area, synthetic, host_mib)
        own = {TIMELINE: result.timeline, TYPES: result.types, SUMMARY: summary,
               PREFIXES: prefix_table(peaks, host_mib) if peaks is not None else None}
        for table, df in own.items():
            if df is not None:
                parts[table.name].append(with_key(df, table, spec, mix, capture, order[spec]))
        row = summary.row(0, named=True)
        found = ", ".join(f"{k} {100 * row[k]:.1f}%" for k in ("savings", "io_reduction") if row[k] is not None)
        log.info("%s: run %d/%d %s replayed in %.1f s (%s)", mix, n, len(runs), spec.run_id,
                 time.perf_counter() - started, found or "nothing to measure")
    for table in (TIMELINE, TYPES, PREFIXES, SUMMARY):
        df = pl.concat(parts[table.name]) if parts[table.name] else pl.DataFrame(schema=table.schema)
        write_parquet(df.sort("run_order", maintain_order=True), outputs[table.name])
