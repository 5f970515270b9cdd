"""Stage 2: page types and read content hashes (schemas PAGES and READS).

Page types come from kpageflags where captured, and from whether a page's
content equals a block of the domain's disk image (then it is page cache).
"""

from __future__ import annotations

import polars as pl

from xpipe.hashing import PAGE_SIZE, ZERO_HASH
from xpipe.pagetypes import FLAG_BITS, KNOWN, ON_DISK, RULES, ZERO, Rule
from xpipe.schemas import PAGE_TYPE, PAGES, READS


def _fact(condition: pl.Expr, bit: int) -> pl.Expr:
    return pl.when(condition).then(pl.lit(bit, pl.UInt64)).otherwise(pl.lit(0, pl.UInt64))


def _matches(rule: Rule) -> pl.Expr:
    facts = pl.col("facts")
    return (((facts & pl.lit(rule.need, pl.UInt64)) == rule.need)
            & ((facts & pl.lit(rule.forbid, pl.UInt64)) == 0))


def page_types(frames: pl.LazyFrame, disk_hashes: pl.LazyFrame | None) -> pl.LazyFrame:
    """Add ``page_type`` to normalised frames by xpipe.pagetypes.RULES; ``disk_hashes`` has one ``hash`` column."""
    if disk_hashes is None:
        frames = frames.with_columns(on_disk=pl.lit(False))
    else:
        on_disk = disk_hashes.select("hash").unique().with_columns(on_disk=pl.lit(True))
        frames = frames.join(on_disk, on="hash", how="left", maintain_order="left").with_columns(
            pl.col("on_disk").fill_null(False))
    facts = (
        (pl.col("kpageflags").fill_null(0) & pl.lit(FLAG_BITS, pl.UInt64))
        | _fact(pl.col("kpageflags").is_not_null(), KNOWN)
        | _fact(pl.col("hash") == ZERO_HASH, ZERO)
        | _fact(pl.col("on_disk"), ON_DISK)
    )
    first, *middle, last = RULES
    kind = pl.when(_matches(first)).then(pl.lit(first.page_type))
    for r in middle:
        kind = kind.when(_matches(r)).then(pl.lit(r.page_type))
    kind = kind.otherwise(pl.lit(last.page_type))
    return (frames.with_columns(facts=facts)
            .with_columns(page_type=kind.cast(PAGE_TYPE))
            .select(PAGES.schema.names()))


def read_hashes(requests: pl.LazyFrame, blocks: pl.LazyFrame | None) -> pl.LazyFrame:
    """One row per 4 KiB block each request covers, with that block's content hash: from
    the disk image's ``blocks``, or, without a disk, the hash the trace carries (one
    4 KiB page a request)."""
    if blocks is None:
        return (requests.sort("seq").with_columns(block=pl.col("offset") // PAGE_SIZE)
                .select(READS.schema.names()))
    first = pl.col("offset") // PAGE_SIZE
    last = (pl.col("offset") + pl.col("bytes") - 1) // PAGE_SIZE
    per_block = (
        requests.sort("seq")
        .with_columns(block=pl.int_ranges(first, last + 1))
        .explode("block")
        .drop("hash")
    )
    return (
        per_block.join(blocks, on="block", how="left", maintain_order="left")
        .with_columns(seq=pl.int_range(pl.len(), dtype=pl.Int64))  # block reads numbered in order
        .select(READS.schema.names())
    )
