"""DomainTrace objects over stage 2's Parquet files, loading one snapshot (or one
partition's share of it) at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from xpipe.hashing import ZERO_HASH
from xpipe.io import write_parquet
from xpipe.sim.partition import PAGE_SHARES, SNAPSHOTS, WHOLE, Partition
from xpipe.sim.trace import DomainTrace

#: Bytes of snapshots kept in memory, over all domains a process loads, first come first kept:
#: domains per host replays every prefix of a mix, so each snapshot is read many times.
CACHE_BYTES = 512 << 20
_cached = [0]  # bytes kept so far


def in_frame_order(pages: pl.LazyFrame, k: int) -> pl.LazyFrame:
    """Snapshot k's PAGES rows with each frame's index: its place among the snapshot's frames,
    in frame-number order. (One snapshot at a time: polars sorts one key several times
    faster than the two of (snapshot, gfn).)"""
    return pages.filter(pl.col("snapshot") == k).sort("gfn").with_row_index("frame").with_columns(
        pl.col("frame").cast(pl.Int64))


def snapshot_summary(pages: pl.LazyFrame) -> pl.DataFrame:
    """One row per snapshot of a domain's PAGES rows: SNAPSHOTS (the domain, its time, frames, zero page)."""
    return SNAPSHOTS.conform(
        pages.group_by("snapshot")
        .agg(pl.col("domain").first(), pl.col("time_s").first(), frames=pl.len(),
             zero=(pl.col("hash") == ZERO_HASH).any())
        .sort("snapshot")
        .collect())


def _snapshot_loader(path: Path, share: Partition | None = None):
    """``load_part(k, partition)`` over a PAGES file, or over a PAGE_SHARES file holding only ``share``."""
    kept: dict[tuple[int, Partition], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def load_part(k: int, part: Partition) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if (k, part) in kept:
            return kept[(k, part)]
        if share is None:
            rows = in_frame_order(pl.scan_parquet(path), k).filter(part.expr("hash"))
        elif part == share:
            rows = pl.scan_parquet(path).filter(pl.col("snapshot") == k)  # written in frame order
        else:
            raise ValueError(f"{path}: holds partition {share.index} of {share.count}, "
                             f"not {part.index} of {part.count}")
        df = rows.select("frame", "hash", pl.col("page_type").to_physical()).collect()
        got = (df["frame"].to_numpy(), df["hash"].to_numpy(),
               df["page_type"].to_numpy().astype(np.uint8))
        size = sum(a.nbytes for a in got)
        if _cached[0] + size <= CACHE_BYTES:
            kept[(k, part)] = got
            _cached[0] += size
        return got

    return load_part


def _no_snapshots(k: int, *_):
    raise IndexError(f"snapshot {k} of a domain without snapshots")


def load_domain(pages: str | Path, reads: str | Path) -> DomainTrace:
    """A domain from its PAGES and READS Parquet files; its snapshots are read when the
    replay asks for them, each only for the partition the replay holds."""
    pages = Path(pages)
    return _domain(snapshot_summary(pl.scan_parquet(pages)), pages, reads, None, pages.stem)


def load_domain_share(snapshots: str | Path, share: str | Path, reads: str | Path, part: Partition) -> DomainTrace:
    """A domain of a partitioned replay, from its SNAPSHOTS, its PAGE_SHARES file of ``part``
    (split_pages) and READS: a replay of ``part`` reads only that partition's frames."""
    return _domain(pl.read_parquet(snapshots), Path(share), reads, part, Path(snapshots).parent.name)


def _domain(snaps: pl.DataFrame, pages: Path, reads: str | Path, share: Partition | None, name: str) -> DomainTrace:
    if snaps.is_empty():  # an I/O-only domain: its reads, no frames
        r = pl.read_parquet(reads, columns=["domain", "time_s", "hash"])
        return DomainTrace(id=r["domain"][0] if len(r) else name, times=np.zeros(0),
                           load=_no_snapshots, frames=0, read_times=r["time_s"].to_numpy(),
                           read_hashes=r["hash"].to_numpy(), load_part=_no_snapshots, zero_snapshots=frozenset())
    if snaps["snapshot"].to_list() != list(range(len(snaps))):
        raise ValueError(f"{pages}: expected snapshots 0..{len(snaps) - 1}, found {snaps['snapshot'].to_list()}")
    frames = int(snaps["frames"][0])
    if (snaps["frames"] != frames).any():
        k = int(snaps.filter(pl.col("frames") != frames)["snapshot"][0])
        raise ValueError(f"domain {snaps['domain'][0]} snapshot {k}: {snaps['frames'][k]} frames, expected {frames}")
    load_part = _snapshot_loader(pages, share)
    r = pl.read_parquet(reads, columns=["time_s", "hash"])
    return DomainTrace(
        id=snaps["domain"][0],
        times=snaps["time_s"].to_numpy(),
        load=lambda k: load_part(k, WHOLE)[1:],  # (a share's file refuses it: it holds one partition)
        frames=frames,
        read_times=r["time_s"].to_numpy(),
        read_hashes=r["hash"].to_numpy(),
        load_part=load_part,
        zero_snapshots=frozenset(snaps.filter(pl.col("zero"))["snapshot"].to_list()),
    )


def split_pages(pages: str | Path, snapshots: str | Path, shares: list[str | Path]) -> None:
    """Write a domain's SNAPSHOTS and its PAGE_SHARES files, one per partition of ``len(shares)``."""
    frames = pl.scan_parquet(pages)
    summary = snapshot_summary(frames)
    write_parquet(summary, snapshots)
    per_snapshot = [in_frame_order(frames, k).collect() for k in summary["snapshot"]]
    rows = PAGE_SHARES.conform(pl.concat(per_snapshot)) if per_snapshot else pl.DataFrame(schema=PAGE_SHARES.schema)
    for i, path in enumerate(shares):
        write_parquet(rows.filter(Partition(i, len(shares)).expr("hash")), path)
