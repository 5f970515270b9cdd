"""The run tables of stage 3: one row per run (and time, domain, page type or
prefix), keyed by the run's columns, which the policy registry defines.

Every run table starts with the same key: mix, capture, run, label, run_order,
policy, one column per registry parameter (null for other policies' runs, so
every table carries ``area_mib``), and snapshot_every. All page counts are
4 KiB pages.
"""

from __future__ import annotations

import polars as pl

from xpipe.schemas import Column, Table
from xpipe.sim.runs import RunSpec, all_params

_S = pl.String()
_F = pl.Float64()
_I = pl.Int64()
_B = pl.Boolean()
_DTYPES = {int: _I, float: _F, bool: _B, str: _S}


def _key() -> tuple[Column, ...]:
    params = tuple(Column(p.name, _DTYPES[p.kind], f"{p.doc}{', ' + p.unit if p.unit else ''} "
                          "(null for other policies)") for p in all_params())
    return (
        Column("mix", _S, "mix name from config"),
        Column("capture", _S, "the capture the mix's domains come from"),
        Column("run", _S, "run id: policy and its parameters (xpipe policies)"),
        Column("label", _S, "the run as figures and tables name it, sizes in MiB"),
        Column("run_order", pl.Int32(), "the run's place in legends and tables (registry order, "
               "then parameters, numbers as numbers)"),
        Column("policy", _S, "policy name"),
        *params,
        Column("snapshot_every", _I, "k: the run replayed every k-th snapshot time (1: all)"),
    )


RUN_KEY = _key()


def run_key(spec: RunSpec, mix: str, capture: str, order: int) -> dict:
    """The key columns' values for one run."""
    return {"mix": mix, "capture": capture, "run": spec.run_id, "label": spec.label, "run_order": order,
            "policy": spec.policy, **spec.columns(), "snapshot_every": spec.snapshot_every}


def with_key(df: pl.DataFrame, table: Table, spec: RunSpec, mix: str, capture: str, order: int) -> pl.DataFrame:
    """``df`` (a table's own columns) with the run's key in front, cast to ``table``."""
    key = run_key(spec, mix, capture, order)
    if clash := set(key) & set(df.columns):
        raise ValueError(f"table {table.name}: columns {sorted(clash)} are the run key's")
    return table.conform(df.with_columns(pl.lit(v).alias(k) for k, v in key.items()))


#: The replay's own columns of the timeline (xpipe.sim.replay writes them).
TIMELINE_OWN = (
        Column("time_s", _F, "guest time, seconds"),
        Column("domain", _S, "domain id"),
        Column("private_pages", _I, "4 KiB pages only this domain's memory holds"),
        Column("shared_mapped", _I, "this domain's frames mapped from shared memory"),
        Column("area_used", _I, "host: pages held in shared memory (area or merged), same on every row of a time"),
        Column("area_mapped", _I, "host: shared pages that some domain maps"),
        Column("area_reserved", _I, "host: the sharing area's reserved size in pages (dsa; else 0)"),
        Column("reads_issued", _I, "disk block reads that reached the disk since the previous time"),
        Column("reads_avoided", _I, "disk block reads served from the area since the previous time"),
        Column("cow_breaks", _I, "writes to shared pages since the previous time"),
)

TIMELINE = Table(
    "timeline",
    "results/{experiment}/replay/{mix}/timeline.parquet",
    "Per run, snapshot time and domain: the state after replaying up to that time (stage 3).",
    RUN_KEY + TIMELINE_OWN,
)

#: xpipe.sim.metrics.summarise's columns.
SUMMARY_OWN = (
        Column("domains", _I, "domains in the mix"),
        Column("snapshots", _I, "snapshot times replayed"),
        Column("snapshot_interval_s", _F, "mean time between the snapshot times replayed, seconds"),
        Column("synthetic", _B, "true when the mix's capture is synthetic"),
        Column("peak_footprint", _I, "max over times of host pages domains use (private + shared mapped)"),
        Column("mean_footprint", _F, "mean over times of the same"),
        Column("peak_footprint_reserved", _I, "max over times of private + area reserved (dsa) or + shared used"),
        Column("mean_footprint_none", _F, "mean footprint without sharing (all frames), same times"),
        Column("savings", _F, "1 - mean_footprint / mean_footprint_none"),
        Column("savings_reserved", _F, "1 - mean footprint with the whole reserved area / mean_footprint_none"),
        Column("oracle_savings", _F, "savings of the oracle on the same mix and times"),
        Column("share_of_oracle", _F, "savings / oracle_savings (1 when the oracle saves nothing)"),
        Column("reads", _I, "disk block reads in the mix's traces"),
        Column("reads_avoided", _I, "reads served from shared memory"),
        Column("io_reduction", _F, "reads_avoided / reads"),
        Column("io_reduction_ideal", _F, "share of reads whose content some domain read before"),
        Column("cow_breaks", _I, "writes to shared pages over the run"),
        Column("area_hit_ratio", _F, "a policy with a sharing area (dsa): hits / lookups (every lookup is a read); else 0"),
        Column("host_mib", _I, "configured host memory, MiB (one row per configured size)"),
        Column("domains_per_host", _I, "mix domains, in mix order, that fit in host_mib; null if not computed "
               "(domains_per_host false, or a run of every k-th snapshot, k > 1) or the mix has no memory"),
        Column("left_out", _S, "the analyses left out (their columns null) because the mix's traces lack "
               "memory snapshots or disk reads, and why; null when nothing is"),
)

SUMMARY = Table(
    "summary",
    "results/{experiment}/replay/{mix}/summary.parquet",
    "One row per run and host size (stage 3). Footprints in 4 KiB pages, over snapshot times. Memory "
    "columns are null for a mix without memory snapshots, I/O columns for one without reads (left_out says).",
    RUN_KEY + SUMMARY_OWN,
)

#: The replay's own columns of the types table.
TYPES_OWN = (
        Column("page_type", _S, "page type of the saved frames"),
        Column("scope", _S, "intra: every frame of the content is in one domain; inter: several"),
        Column("pages_saved", _F, "frames mapped from shared memory minus shared pages kept, mean over times"),
)

TYPES = Table(
    "types",
    "results/{experiment}/replay/{mix}/types.parquet",
    "Pages saved by run, page type and scope, averaged over snapshot times (stage 3).",
    RUN_KEY + TYPES_OWN,
)

#: xpipe.sim.metrics.prefix_table's columns.
PREFIXES_OWN = (
        Column("domains", _I, "k: the mix's first k domains, in mix order"),
        Column("peak_footprint", _I, "peak footprint of those k domains, pages"),
        Column("host_mib", _I, "configured host memory, MiB"),
        Column("fits", _B, "peak_footprint <= host_mib in pages"),
)

PREFIXES = Table(
    "prefixes",
    "results/{experiment}/replay/{mix}/prefixes.parquet",
    "Peak footprint of the mix's first k domains, per run and host size: domains per host (stage 3).",
    RUN_KEY + PREFIXES_OWN,
)

#: The run tables, each one Parquet file per mix.
TABLES = (SUMMARY, TIMELINE, TYPES, PREFIXES)


def own_schema(columns: tuple[Column, ...]) -> dict:
    return {c.name: c.dtype for c in columns}


def _check_parameter_names() -> None:
    """A policy parameter is a column of every run table and a key of the sweep: it
    must not be named like another column or sweep key."""
    own = {c.name for t in TABLES for c in t.columns} - {p.name for p in all_params()}
    taken = own | {"policies", "snapshot_every", "host_mib"}
    clash = sorted({p.name for p in all_params()} & taken)
    if clash:
        raise ValueError(f"policy parameters {clash} are named like run-table columns or sweep keys")


_check_parameter_names()
