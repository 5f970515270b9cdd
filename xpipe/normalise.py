"""Stage 1: a capture bundle's files into Parquet (schemas FRAMES, REQUESTS, BLOCKS, DOMAINS)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import polars as pl

from xpipe.bundle import disk_block_hashes
from xpipe.errors import InputError
from xpipe.hashing import PAGES_PER_MIB
from xpipe.readers.compact import read_kpageflags, read_u64
from xpipe.readers.manifest import Disk, Domain, Manifest
from xpipe.readers.registry import READ_TRACE_READERS, read_snapshot
from xpipe.schemas import BLOCKS, DOMAINS, FRAMES, KSM_AT_CAPTURE, REQUESTS, SKIPPED
from xpipe.sim.trace import kept_snapshots

log = logging.getLogger(__name__)


def normalise_disk(disk: Disk, threads: int = 0) -> pl.DataFrame:
    """One hash per 4 KiB block of the disk, from its block-hash file or by hashing its image."""
    if disk.block_hashes is not None:
        h = read_u64(disk.block_hashes)
    else:
        h = disk_block_hashes(disk.image, threads)
    return pl.DataFrame({"block": np.arange(len(h), dtype=np.int64), "hash": h}, schema=BLOCKS.schema)


def frame_table(domain: str, snapshot: int, time_s: float, gfn: np.ndarray, hashes: np.ndarray,
                kpageflags: Path | None) -> pl.DataFrame:
    """One snapshot's FRAMES rows, with each frame's flags from the kpageflags file when given
    (which must hold one word per frame: xpipe.readers.compact.check_kpageflags)."""
    flags = pl.repeat(None, len(gfn), dtype=pl.UInt64, eager=True)
    if kpageflags is not None:
        values, known = read_kpageflags(kpageflags, gfn)
        flags = pl.Series(values, dtype=pl.UInt64).set(pl.Series(~known), None)
    return pl.DataFrame({"domain": domain, "snapshot": snapshot, "time_s": time_s, "gfn": gfn,
                         "hash": hashes, "kpageflags": flags}, schema=FRAMES.schema)


def kept(domain: Domain, keep_every: int) -> list[int]:
    """Indexes of the domain's snapshots stage 1 passes on (the capture's ``keep_every``)."""
    return kept_snapshots(np.array([s.time_s for s in domain.snapshots]), keep_every).tolist()


def normalise_frames(domain: Domain, threads: int = 0, keep_every: int = 1) -> pl.DataFrame:
    """Every snapshot of the domain, or every ``keep_every``-th and the last, frame by frame,
    with kpageflags where captured, numbered 0.. in time order. Raw dumps are hashed with
    ``threads`` threads (0: one per core). Every snapshot is read, in order, each given the
    one before it (a `delta` snapshot is the changes to it)."""
    expected = domain.memory_mib * PAGES_PER_MIB
    keep = kept(domain, keep_every)
    parts = []
    first_gfn = None
    previous = None
    for k, snap in enumerate(domain.snapshots):
        gfn, h = read_snapshot(snap.kind, snap.path, threads, previous)
        if len(h) > expected:
            # QEMU's ELF/kdump dumps hold every RAM block mapped in the guest's physical address
            # space, the PC's 256 KiB BIOS ROM just below 4 GiB included: not guest RAM.
            rom = (gfn >= 0xFFFC0) & (gfn < 0x100000)
            if len(h) - int(rom.sum()) == expected:
                log.info("domain %s: snapshot %d: left out the %d frames of the PC firmware ROM "
                         "(gfn 0xfffc0..0xfffff)", domain.id, k + 1, int(rom.sum()))
                gfn, h = gfn[~rom], h[~rom]
        if len(h) != expected:
            found = f"expected {expected} page frames ({domain.memory_mib} MiB), found {len(h)}"
            if len(h) > expected:
                extra = np.sort(gfn)[expected:]
                found += (f"; the {len(extra)} frames past the first {expected} are gfn {extra[0]:#x}.."
                          f"{extra[-1]:#x}, not only the PC firmware ROM's (0xfffc0..0xfffff)")
            raise InputError(snap.path, None, found)
        if first_gfn is None:
            first_gfn = gfn
        elif not np.array_equal(gfn, first_gfn):
            raise InputError(snap.path, None, "expected the same guest frames as the domain's first snapshot")
        previous = (gfn, h)
        if k in keep:
            parts.append(frame_table(domain.id, len(parts), snap.time_s, gfn, h, snap.kpageflags))
        log.info("domain %s: snapshot %d/%d normalised", domain.id, k + 1, len(domain.snapshots))
    return FRAMES.conform(pl.concat(parts)) if parts else pl.DataFrame(schema=FRAMES.schema)


def normalise_requests(domain: Domain, disk_bytes: int | None, skipped: dict[str, int] | None = None) -> pl.DataFrame:
    """The domain's read requests, by the reader of its trace's format. With ``skipped``
    (lenient reading) bad records are counted there by kind and left out."""
    if domain.reads is None:
        return pl.DataFrame(schema=REQUESTS.schema)
    t, off, n, h = READ_TRACE_READERS[domain.reads_format](domain.reads, domain.reads_start_epoch_s,
                                                           dict(domain.reads_select), disk_bytes, skipped)
    hashes = pl.Series(h, dtype=pl.UInt64) if h is not None else pl.repeat(None, len(t), dtype=pl.UInt64,
                                                                          eager=True)
    return pl.DataFrame({"domain": domain.id, "seq": np.arange(len(t), dtype=np.int64),
                         "time_s": t, "offset": off, "bytes": n, "hash": hashes}, schema=REQUESTS.schema)


def skipped_table(domain: Domain, skipped: dict[str, int]) -> pl.DataFrame:
    """The SKIPPED rows of a domain: how many bad records of each kind lenient reading left out."""
    kinds = sorted(skipped)
    return pl.DataFrame({"domain": domain.id, "file": str(domain.reads) if domain.reads else None,
                         "kind": kinds, "records": [skipped[k] for k in kinds]}, schema=SKIPPED.schema)


def ksm_at_capture_table(capture: str, manifest: Manifest) -> pl.DataFrame:
    """One row per snapshot time and batch of the manifest's ``ksm`` records (every guest of a
    batch carries the same record: the manifest reader checks it)."""
    rows = {}
    for d in manifest.domains:
        for s in d.snapshots:
            k = s.ksm
            if k is not None:
                rows[(s.time_s, k.guests)] = (
                    capture, s.time_s, ",".join(k.guests), k.pages_sharing, k.pages_shared, k.full_scans,
                    k.backed_pages, k.predicted_sharing, k.predicted_sharing_all_mergeable, k.settled)
    return pl.DataFrame(list(rows.values()), schema=KSM_AT_CAPTURE.schema, orient="row")


def domains_table(capture: str, manifest: Manifest, reads_per_domain: dict[str, int],
                  skipped_per_domain: dict[str, int], keep_every: int = 1) -> pl.DataFrame:
    return pl.DataFrame(
        [(capture, d.id, d.workload, d.os, d.memory_mib, d.memory_mib * PAGES_PER_MIB, len(kept(d, keep_every)),
          reads_per_domain.get(d.id, 0), manifest.hash_kind, skipped_per_domain.get(d.id, 0), manifest.synthetic)
         for d in manifest.domains],
        schema=DOMAINS.schema, orient="row",
    )
