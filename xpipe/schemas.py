"""Every Parquet table xpipe writes: columns, types and units, in one place.

Each stage imports its schema from here and nothing else defines a column.
`xpipe describe` prints this module's tables for users of the results.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import polars as pl

from xpipe.pagetypes import PAGE_TYPES


def fill(template: str, **values) -> str:
    """A path template with the given fields filled in and the others left as {wildcards}."""
    return re.sub(r"\{(\w+)\}", lambda m: str(values[m[1]]) if m[1] in values else m[0], template)


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

    def path(self, **values) -> str:
        """``where`` with the given fields filled in; the others stay {wildcards}."""
        return fill(self.where, **values)

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
        Column("hash", _U64, "the content's hash when the trace carries it (FIU: MD5, first 8 bytes); "
               "null when it comes from the disk image"),
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
        Column("os", _S, "the guest's operating system as the capture recorded it (e.g. \"debian trixie, "
               "linux 6.12.57+deb13-amd64\"); null when the bundle does not say"),
        Column("memory_mib", _I, "guest memory, MiB"),
        Column("frames", _I, "guest page frames (4 KiB) per snapshot"),
        Column("snapshots", _I, "memory snapshots passed on: all, or every keep_every-th and the last "
               "(the capture entry's keep_every)"),
        Column("reads", _I, "4 KiB disk blocks read in the trace"),
        Column("hash_kind", _S, "what identifies a content in this capture: xxh3-64 (memory, disk images), "
               "md5 (FIU traces) or 32-bit (UMass memory traces); contents of different kinds are never "
               "compared"),
        Column("records_skipped", _I, "bad records of the domain's read trace skipped by lenient reading "
               "(the capture's `lenient: true`; by kind in the skipped table); 0 otherwise"),
        Column("synthetic", _B, "true when the capture was generated, not recorded"),
    ),
)

KSM_AT_CAPTURE = Table(
    "ksm_at_capture",
    "results/normalised/{capture}/ksm_at_capture.parquet",
    "The host's KSM while the guests ran, one row per snapshot time and batch of guests booted "
    "together, beside xpipe's prediction for the same moment; empty unless the capture ran KSM "
    "(a capture spec's `ksm`).",
    (
        Column("capture", _S, "capture name from config"),
        Column("time_s", _F, "snapshot time, seconds since QEMU's start"),
        Column("guests", _S, "the domains KSM ran on, comma-separated"),
        Column("ksm_pages_sharing", _I, "KSM's pages_sharing: guest pages it saved"),
        Column("ksm_pages_shared", _I, "KSM's pages_shared: merged pages kept"),
        Column("ksm_full_scans", _I, "KSM's full_scans since it started"),
        Column("backed_pages", _I, "guest pages the host backed (not the shared zero page)"),
        Column("predicted_sharing", _I, "xpipe's prediction: backed pages minus distinct contents"),
        Column("predicted_sharing_all_mergeable", _I, "the same over every mergeable QEMU mapping "
               "(guest RAM plus firmware and ROM blocks)"),
        Column("settled", _B, "KSM was read once it had settled on the paused guests; false: as the live "
               "guests left it"),
    ),
)

SKIPPED = Table(
    "skipped",
    "results/normalised/{capture}/skipped/{domain}.parquet",
    "Bad records of a domain's read trace that lenient reading skipped, by kind (stage 1); "
    "empty unless the capture says `lenient: true`.",
    (
        Column("domain", _S, "domain id"),
        Column("file", _S, "the trace file"),
        Column("kind", _S, "what was wrong with the records, e.g. 'malformed line'"),
        Column("records", _I, "how many records of this kind were skipped"),
    ),
)

#: The tables of the capture stages (1 and 2); the run tables are in xpipe.sim.tables.
TABLES = (DOMAINS, KSM_AT_CAPTURE, FRAMES, REQUESTS, SKIPPED, PAGES, READS)


def describe(tables: tuple[Table, ...] = TABLES) -> str:
    """Human-readable description of results tables."""
    lines = []
    for t in tables:
        lines.append(f"{t.name}  ({t.where})\n  {t.doc}")
        for c in t.columns:
            lines.append(f"    {c.name:<24} {str(c.dtype):<8} {c.doc}")
        lines.append("")
    return "\n".join(lines)
