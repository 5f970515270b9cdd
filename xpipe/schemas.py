"""Every Parquet table xpipe writes: columns, types and units, in one place.

Each stage imports its schema from here and nothing else defines a column.
`xpipe describe` prints this module's tables for users of the results.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import polars as pl

from xpipe.pagetypes import PAGE_TYPES


@dataclass(frozen=True)
class Column:
    name: str
    dtype: pl.DataType
    doc: str


@dataclass(frozen=True)
class Table:
    name: str
    where: str
    doc: str
    columns: tuple[Column, ...]

    @property
    def schema(self) -> pl.Schema:
        return pl.Schema({c.name: c.dtype for c in self.columns})

    def arrow_schema(self) -> str:
        """The ``ARROW:schema`` metadata polars writes for this table: what lets a
        Parquet file written without polars read back with these dtypes."""
        buf = io.BytesIO()
        pl.DataFrame(schema=self.schema).write_parquet(buf)
        buf.seek(0)
        return pl.read_parquet_metadata(buf)["ARROW:schema"]

    def conform(self, df: pl.DataFrame) -> pl.DataFrame:
        """Select and cast ``df`` to exactly this table's columns, in order."""
        missing = [c.name for c in self.columns if c.name not in df.columns]
        if missing:
            raise ValueError(f"table {self.name}: missing columns {missing}")
        return df.select([pl.col(c.name).cast(c.dtype) for c in self.columns])


#: The dtype of every page_type column.
PAGE_TYPE = pl.Enum(PAGE_TYPES)

_S = pl.String()
_F = pl.Float64()
_I = pl.Int64()
_U64 = pl.UInt64()
_B = pl.Boolean()

FRAMES = Table(
    "frames",
    "results/normalised/{capture}/frames/{domain}.parquet",
    "One row per guest page frame per snapshot, as captured (stage 1).",
    (
        Column("domain", _S, "domain id from the capture manifest"),
        Column("snapshot", pl.Int32(), "snapshot index, 0-based, in time order"),
        Column("time_s", _F, "guest time of the snapshot, seconds since boot"),
        Column("gfn", _I, "guest frame number (guest-physical address / 4096)"),
        Column("hash", _U64, "xxh3-64 of the 4096-byte page content"),
        Column("kpageflags", _U64, "the frame's /proc/kpageflags word; null when not captured"),
    ),
)

REQUESTS = Table(
    "requests",
    "results/normalised/{capture}/requests/{domain}.parquet",
    "One row per disk read request in the domain's trace (stage 1).",
    (
        Column("domain", _S, "domain id"),
        Column("seq", _I, "position in the trace, 0-based"),
        Column("time_s", _F, "guest time of the request, seconds since boot"),
        Column("offset", _I, "byte offset in the disk image"),
        Column("bytes", _I, "request length, bytes"),
    ),
)

BLOCKS = Table(
    "blocks",
    "results/normalised/{capture}/disks/{disk}.parquet",
    "One row per 4 KiB block of a disk image (stage 1).",
    (
        Column("block", _I, "block index (byte offset / 4096)"),
        Column("hash", _U64, "xxh3-64 of the block's 4096 bytes"),
    ),
)

PAGES = Table(
    "pages",
    "results/pages/{capture}/{domain}.parquet",
    "One row per guest page frame per snapshot (stage 2).",
    (
        Column("domain", _S, "domain id from the capture manifest"),
        Column("snapshot", pl.Int32(), "snapshot index, 0-based, in time order"),
        Column("time_s", _F, "guest time of the snapshot, seconds since boot"),
        Column("gfn", _I, "guest frame number (guest-physical address / 4096)"),
        Column("hash", _U64, "xxh3-64 of the 4096-byte page content"),
        Column("page_type", PAGE_TYPE, "one of " + ", ".join(PAGE_TYPES)),
    ),
)

READS = Table(
    "reads",
    "results/reads/{capture}/{domain}.parquet",
    "One row per 4 KiB disk block a domain read, in trace order (stage 2).",
    (
        Column("domain", _S, "domain id"),
        Column("seq", _I, "position in the domain's read trace, 0-based"),
        Column("time_s", _F, "guest time of the read, seconds since boot"),
        Column("block", _I, "4 KiB block index in the disk image (byte offset / 4096)"),
        Column("hash", _U64, "xxh3-64 of the block's 4096 bytes"),
    ),
)

DOMAINS = Table(
    "domains",
    "results/normalised/{capture}/domains.parquet",
    "One row per domain of a capture (written once stage 2 has counted its block reads).",
    (
        Column("capture", _S, "capture name from config"),
        Column("domain", _S, "domain id"),
        Column("workload", _S, "workload the domain ran"),
        Column("memory_mib", _I, "guest memory, MiB"),
        Column("frames", _I, "guest page frames (4 KiB) per snapshot"),
        Column("snapshots", _I, "number of memory snapshots"),
        Column("reads", _I, "4 KiB disk blocks read in the trace"),
        Column("synthetic", _B, "true when the capture was generated, not recorded"),
    ),
)

TIMELINE = Table(
    "timeline",
    "results/replay/{mix}/{run}/timeline.parquet",
    "Per snapshot time and domain, the state after replaying up to that time (stage 3).",
    (
        Column("mix", _S, "mix name from config"),
        Column("run", _S, "run id: policy and its parameters"),
        Column("policy", _S, "none, zero, oracle, scan or dsa"),
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
    ),
)

SUMMARY = Table(
    "summary",
    "results/replay/{mix}/{run}/summary.parquet",
    "One row per run and host size (stage 3). Footprints in 4 KiB pages, over snapshot times.",
    (
        Column("mix", _S, "mix name"),
        Column("run", _S, "run id"),
        Column("policy", _S, "policy name"),
        Column("eviction", _S, "dsa eviction rule (lru, lfu, fifo), else empty"),
        Column("area_pages", _I, "dsa area size in pages, else 0"),
        Column("admit_zero", _B, "dsa admits the zero page"),
        Column("scan_pages_per_s", _I, "scan rate, pages per second, else 0"),
        Column("snapshot_every", _I, "k: the run replayed every k-th snapshot time (1: all)"),
        Column("domains", _I, "domains in the mix"),
        Column("synthetic", _B, "true when the mix's capture is synthetic"),
        Column("peak_footprint", _I, "max over times of host pages domains use (private + shared mapped)"),
        Column("mean_footprint", _F, "mean over times of the same"),
        Column("peak_footprint_reserved", _I, "max over times of private + area reserved (dsa) or + shared used"),
        Column("mean_footprint_none", _F, "mean footprint without sharing (all frames), same times"),
        Column("savings", _F, "1 - mean_footprint / mean_footprint_none"),
        Column("savings_reserved", _F, "1 - mean footprint with the whole reserved area / mean_footprint_none"),
        Column("oracle_savings", _F, "savings of the oracle on the same mix"),
        Column("share_of_oracle", _F, "savings / oracle_savings (1 when the oracle saves nothing)"),
        Column("reads", _I, "disk block reads in the mix's traces"),
        Column("reads_avoided", _I, "reads served from shared memory"),
        Column("io_reduction", _F, "reads_avoided / reads"),
        Column("io_reduction_ideal", _F, "share of reads whose content some domain read before"),
        Column("cow_breaks", _I, "writes to shared pages over the run"),
        Column("area_hit_ratio", _F, "dsa: area hits / lookups (reads); else 0"),
        Column("host_mib", _I, "configured host memory, MiB (one row per configured size)"),
        Column("domains_per_host", _I, "mix domains, in mix order, that fit in host_mib; null if not computed"),
    ),
)

TYPES = Table(
    "types",
    "results/replay/{mix}/{run}/types.parquet",
    "Pages saved by type and scope, averaged over snapshot times (stage 3).",
    (
        Column("mix", _S, "mix name"),
        Column("run", _S, "run id"),
        Column("page_type", _S, "page type of the saved frames"),
        Column("scope", _S, "intra: every frame of the content is in one domain; inter: several"),
        Column("pages_saved", _F, "frames mapped from shared memory minus shared pages kept, mean over times"),
    ),
)

CAPACITY = Table(
    "capacity",
    "results/replay/{mix}/{run}/capacity.parquet",
    "Footprint of the mix's first k domains, for domains-per-host (stage 3).",
    (
        Column("mix", _S, "mix name"),
        Column("run", _S, "run id"),
        Column("domains", _I, "k: the mix's first k domains, in mix order"),
        Column("peak_footprint", _I, "peak footprint of those k domains, pages"),
        Column("host_pages", _I, "configured host memory, pages"),
        Column("fits", _B, "peak_footprint <= host_pages"),
    ),
)

TABLES = (DOMAINS, FRAMES, REQUESTS, BLOCKS, PAGES, READS, TIMELINE, SUMMARY, TYPES, CAPACITY)


def describe() -> str:
    """Human-readable description of every results table."""
    lines = []
    for t in TABLES:
        lines.append(f"{t.name}  ({t.where})\n  {t.doc}")
        for c in t.columns:
            lines.append(f"    {c.name:<24} {str(c.dtype):<8} {c.doc}")
        lines.append("")
    return "\n".join(lines)
