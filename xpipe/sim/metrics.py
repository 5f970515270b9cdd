"""Metrics over replay output: plain functions from timelines to numbers."""

from __future__ import annotations

import polars as pl

from xpipe.hashing import PAGES_PER_MIB
from xpipe.sim.tables import PREFIXES_OWN, SUMMARY_OWN, own_schema


def per_time(timeline: pl.DataFrame) -> pl.DataFrame:
    """Host totals per time: footprint (mapped), with the whole area, and without sharing.

    The footprint formula is defined here and, for queries, as the ``per_time``
    view of the results database (xpipe.report.db), which a test holds equal to this.
    """
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


def domains_per_host(prefix_peaks: list[tuple[int, int]], host_mib: int) -> int:
    """How many of the mix's domains, added in mix order, fit before the first that does not.

    ``prefix_peaks``: (k, peak footprint of the first k domains) for k = 1, 2, ...
    """
    fits = 0
    for k, peak in sorted(prefix_peaks):
        if peak > host_mib * PAGES_PER_MIB:
            break
        fits = k
    return fits


def prefix_table(prefix_peaks: list[tuple[int, int]], host_mib: list[int]) -> pl.DataFrame:
    """The prefixes table's own columns: every prefix against every host size."""
    rows = [(k, peak, h, peak <= h * PAGES_PER_MIB) for h in host_mib for k, peak in prefix_peaks]
    return pl.DataFrame(rows, schema=own_schema(PREFIXES_OWN), orient="row")


def summarise(timeline: pl.DataFrame, oracle_timeline: pl.DataFrame, prefix_peaks: list[tuple[int, int]] | None,
              has_area: bool, synthetic: bool, host_mib: list[int]) -> pl.DataFrame:
    """The summary's own columns, one row per configured host size: the run's
    footprints, savings, I/O and COW figures."""
    t = per_time(timeline)
    # the oracle at the run's own times (a run may replay every k-th snapshot only)
    o = per_time(oracle_timeline).filter(pl.col("time_s").is_in(t["time_s"].implode()))
    none_mean = float(t["footprint_none"].mean() or 0.0)
    mean_fp = float(t["footprint"].mean() or 0.0)
    issued, avoided = int(timeline["reads_issued"].sum()), int(timeline["reads_avoided"].sum())
    reads = issued + avoided
    ideal = int(oracle_timeline["reads_avoided"].sum())
    # a half the mix's traces lack is left out (null), with the reason, never a zero
    left_out = []
    if none_mean == 0:
        left_out.append("memory: the mix's domains have no memory snapshots")
    if reads == 0:
        left_out.append("I/O: the mix's domains have no disk reads")
    memory = none_mean > 0
    savings = 1 - mean_fp / none_mean if memory else None
    oracle_savings = 1 - float(o["footprint"].mean()) / none_mean if memory else None
    io_reduction = avoided / reads if reads else None
    times = t["time_s"].to_numpy()
    interval = float(times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 0.0
    rows = []
    for h in host_mib:
        rows.append({
            "domains": timeline["domain"].n_unique(), "snapshots": len(times), "snapshot_interval_s": interval,
            "synthetic": synthetic,
            "peak_footprint": int(t["footprint"].max()), "mean_footprint": mean_fp,
            "peak_footprint_reserved": int(t["footprint_reserved"].max()),
            "mean_footprint_none": none_mean, "savings": savings,
            "savings_reserved": 1 - float(t["footprint_reserved"].mean()) / none_mean if memory else None,
            "oracle_savings": oracle_savings,
            "share_of_oracle": (savings / oracle_savings if oracle_savings > 0 else 1.0) if memory else None,
            "reads": reads, "reads_avoided": avoided,
            "io_reduction": io_reduction,
            "io_reduction_ideal": ideal / reads if reads else None,
            "cow_breaks": int(timeline["cow_breaks"].sum()),
            "area_hit_ratio": (io_reduction if has_area else 0.0) if reads else None,  # every lookup is a read
            "host_mib": h,
            "domains_per_host": domains_per_host(prefix_peaks, h) if prefix_peaks is not None and memory else None,
            "left_out": "; ".join(left_out) or None,
        })
    return pl.DataFrame(rows, schema=own_schema(SUMMARY_OWN))
