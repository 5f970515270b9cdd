"""Stage 2: page types and read content hashes (schemas PAGES and READS).

Page types come from kpageflags where captured, and from whether a page's
content equals a block of the domain's disk image (then it is page cache).
"""

from __future__ import annotations

import polars as pl

from xpipe.hashing import PAGE_SIZE, ZERO_HASH
from xpipe.schemas import PAGE_TYPE, PAGES, READS

#: Bits of /proc/kpageflags (the kernel's Documentation/admin-guide/mm/pagemap.rst).
KPF = {"SLAB": 7, "BUDDY": 10, "MMAP": 11, "ANON": 12, "NOPAGE": 20, "PGTABLE": 26, "RESERVED": 32}


def _bit(name: str) -> pl.Expr:
    return (pl.col("kpageflags") & (1 << KPF[name])) != 0


def page_types(frames: pl.LazyFrame, disk_hashes: pl.LazyFrame | None) -> pl.LazyFrame:
    """Add ``page_type`` to normalised frames; ``disk_hashes`` has one ``hash`` column."""
    if disk_hashes is None:
        frames = frames.with_columns(on_disk=pl.lit(False))
    else:
        on_disk = disk_hashes.select("hash").unique().with_columns(on_disk=pl.lit(True))
        frames = frames.join(on_disk, on="hash", how="left", maintain_order="left").with_columns(
            pl.col("on_disk").fill_null(False))
    known = pl.col("kpageflags").is_not_null()
    file_page = pl.col("on_disk") & ~(known & _bit("ANON"))
    kind = (
        pl.when(known & _bit("BUDDY")).then(pl.lit("free"))
        .when(pl.col("hash") == ZERO_HASH).then(pl.lit("zero"))
        .when(known & _bit("RESERVED")).then(pl.lit("kernel"))
        .when(file_page & known & _bit("MMAP")).then(pl.lit("file_code"))
        .when(file_page & known).then(pl.lit("file_data"))
        .when(file_page).then(pl.lit("file"))
        .when(known & _bit("SLAB")).then(pl.lit("slab"))
        .when(known & _bit("PGTABLE")).then(pl.lit("pagetable"))
        .when(known & _bit("ANON")).then(pl.lit("anonymous"))
        .otherwise(pl.lit("unknown"))
    )
    return frames.with_columns(page_type=kind.cast(PAGE_TYPE)).select(PAGES.schema.names())


def read_hashes(requests: pl.LazyFrame, blocks: pl.LazyFrame) -> pl.LazyFrame:
    """One row per 4 KiB block each request covers, with that block's content hash."""
    first = pl.col("offset") // PAGE_SIZE
    last = (pl.col("offset") + pl.col("bytes") - 1) // PAGE_SIZE
    per_block = (
        requests.sort("seq")
        .with_columns(block=pl.int_ranges(first, last + 1))
        .explode("block")
    )
    return (
        per_block.join(blocks, on="block", how="left", maintain_order="left")
        .with_columns(seq=pl.int_range(pl.len(), dtype=pl.Int64))  # block reads numbered in order
        .select(READS.schema.names())
    )
