"""Metrics over replay output: plain functions from timelines to numbers
(and domains-per-host, which replays every prefix of a mix)."""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from xpipe.hashing import PAGES_PER_MIB
from xpipe.schemas import CAPACITY, SUMMARY
from xpipe.sim.replay import DomainTrace, RunSpec, replay


def per_time(timeline: pl.DataFrame) -> pl.DataFrame:
    """Host totals per time: footprint (mapped), with the whole area, and without sharing."""
    return (
        timeline.group_by("time_s")
        .agg(
            private=pl.col("private_pages").sum(),
            mapped=pl.col("shared_mapped").sum(),
            area_mapped=pl.col("area_mapped").first(),
            area_held=pl.max_horizontal(pl.col("area_reserved").first(), pl.col("area_used").first()),
        )
        .with_columns(
            footprint=pl.col("private") + pl.col("area_mapped"),
            footprint_reserved=pl.col("private") + pl.col("area_held"),
            footprint_none=pl.col("private") + pl.col("mapped"),
        )
        .sort("time_s")
    )


def peak_footprint(timeline: pl.DataFrame) -> int:
    """Max over times of host pages that domains use: private + shared pages mapped."""
    return int(per_time(timeline)["footprint"].max() or 0)


def capacity(domains: Sequence[DomainTrace], spec: RunSpec, mix: str = "",
             whole: pl.DataFrame | None = None) -> list[tuple[int, int]]:
    """(k, peak footprint of the mix's first k domains) for k = 1..len(domains).

    ``whole``: the timeline of the whole mix under ``spec`` when the caller has
    replayed it already, so the last prefix is not replayed again.
    """
    n = len(domains)
    return [(k, peak_footprint(whole if k == n and whole is not None else
                               replay(domains[:k], spec, mix, with_types=False).timeline))
            for k in range(1, n + 1)]


def domains_per_host(capacity: pl.DataFrame, host_pages: int) -> int:
    """How many of the mix's domains, added in mix order, fit before the first that does not."""
    fits = 0
    for row in capacity.sort("domains").iter_rows(named=True):
        if row["peak_footprint"] > host_pages:
            break
        fits = row["domains"]
    return fits


def capacity_table(mix: str, run: str, prefixes: list[tuple[int, int]], host_mib: list[int]) -> pl.DataFrame:
    rows = [(mix, run, k, fp, h * PAGES_PER_MIB, fp <= h * PAGES_PER_MIB)
            for h in host_mib for k, fp in prefixes]
    return pl.DataFrame(rows, schema=CAPACITY.schema, orient="row")


def summarise(timeline: pl.DataFrame, oracle_timeline: pl.DataFrame, capacity: pl.DataFrame | None,
              spec: RunSpec, mix: str, synthetic: bool, host_mib: list[int]) -> pl.DataFrame:
    """One row per configured host size: the run's footprints, savings, I/O and COW figures."""
    t = per_time(timeline)
    # the oracle at the run's own times (a run may replay every k-th snapshot only)
    o = per_time(oracle_timeline).filter(pl.col("time_s").is_in(t["time_s"].implode()))
    none_mean = float(t["footprint_none"].mean())
    mean_fp = float(t["footprint"].mean())
    savings = 1 - mean_fp / none_mean if none_mean else 0.0
    oracle_savings = 1 - float(o["footprint"].mean()) / none_mean if none_mean else 0.0
    issued, avoided = int(timeline["reads_issued"].sum()), int(timeline["reads_avoided"].sum())
    reads = issued + avoided
    io_reduction = avoided / reads if reads else 0.0
    ideal = int(oracle_timeline["reads_avoided"].sum())
    rows = []
    for h in host_mib:
        dph = domains_per_host(capacity.filter(pl.col("host_pages") == h * PAGES_PER_MIB), h * PAGES_PER_MIB) \
            if capacity is not None else None
        rows.append({
            "mix": mix, "run": spec.run_id, "policy": spec.policy, "eviction": spec.eviction,
            "area_pages": spec.area_pages, "admit_zero": spec.admit_zero,
            "scan_pages_per_s": spec.scan_pages_per_s, "snapshot_every": spec.snapshot_every,
            "domains": timeline["domain"].n_unique(),
            "synthetic": synthetic,
            "peak_footprint": int(t["footprint"].max()), "mean_footprint": mean_fp,
            "peak_footprint_reserved": int(t["footprint_reserved"].max()),
            "mean_footprint_none": none_mean, "savings": savings,
            "savings_reserved": 1 - float(t["footprint_reserved"].mean()) / none_mean if none_mean else 0.0,
            "oracle_savings": oracle_savings,
            "share_of_oracle": savings / oracle_savings if oracle_savings > 0 else 1.0,
            "reads": reads, "reads_avoided": avoided,
            "io_reduction": io_reduction,
            "io_reduction_ideal": ideal / reads if reads else 0.0,
            "cow_breaks": int(timeline["cow_breaks"].sum()),
            "area_hit_ratio": io_reduction if spec.policy == "dsa" else 0.0,  # every lookup is a read
            "host_mib": h, "domains_per_host": dph,
        })
    return pl.DataFrame(rows, schema=SUMMARY.schema)
