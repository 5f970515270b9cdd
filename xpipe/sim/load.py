"""DomainTrace objects over stage 2's Parquet files, loading one snapshot at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from xpipe.sim.replay import DomainTrace

#: Snapshots kept in memory per domain when they fit: domains per host replays
#: every prefix of a mix, so each snapshot is read many times.
CACHE_BYTES = 256 << 20


def _snapshot_loader(path: Path, cache: bool):
    kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def load(k: int) -> tuple[np.ndarray, np.ndarray]:
        if k in kept:
            return kept[k]
        df = (
            pl.scan_parquet(path)
            .filter(pl.col("snapshot") == k)
            .sort("gfn")
            .select("hash", pl.col("page_type").to_physical())
            .collect()
        )
        got = df["hash"].to_numpy(), df["page_type"].to_numpy().astype(np.uint8)
        if cache:
            kept[k] = got
        return got

    return load


def _no_snapshots(k: int):
    raise IndexError(f"snapshot {k} of a domain without snapshots")


def load_domain(pages: str | Path, reads: str | Path) -> DomainTrace:
    """A domain from its PAGES and READS Parquet files."""
    pages, reads = Path(pages), Path(reads)
    snaps = (
        pl.scan_parquet(pages)
        .group_by("snapshot")
        .agg(pl.col("domain").first(), pl.col("time_s").first(), frames=pl.len())
        .sort("snapshot")
        .collect()
    )
    if snaps.is_empty():  # an I/O-only domain: its reads, no frames
        r = pl.read_parquet(reads, columns=["domain", "time_s", "hash"])
        return DomainTrace(id=r["domain"][0] if len(r) else pages.stem, times=np.zeros(0),
                           load=_no_snapshots, frames=0, read_times=r["time_s"].to_numpy(),
                           read_hashes=r["hash"].to_numpy())
    if snaps["snapshot"].to_list() != list(range(len(snaps))):
        raise ValueError(f"{pages}: expected snapshots 0..{len(snaps) - 1}, found {snaps['snapshot'].to_list()}")
    r = pl.read_parquet(reads, columns=["time_s", "hash"])
    return DomainTrace(
        id=snaps["domain"][0],
        times=snaps["time_s"].to_numpy(),
        load=_snapshot_loader(pages, cache=int(snaps["frames"].sum()) * 9 <= CACHE_BYTES),
        frames=int(snaps["frames"][0]),
        read_times=r["time_s"].to_numpy(),
        read_hashes=r["hash"].to_numpy(),
    )
