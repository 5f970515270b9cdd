"""Reading xpipe's compact files: one little-endian u64 per page frame or disk block.

xpipe.bundle writes them.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from xpipe.errors import InputError


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when its name ends in ``.gz``."""
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as f:
                return f.read()
        except (OSError, EOFError) as e:
            raise InputError(path, None, f"expected a gzip file ({e})") from None
    return path.read_bytes()


def read_u64(path: str | Path) -> np.ndarray:
    """One uint64 per 8 bytes of the file (page hashes, block hashes, kpageflags)."""
    path = Path(path)
    data = read_bytes(path)
    if len(data) % 8:
        raise InputError(
            path, f"offset {len(data) - len(data) % 8}",
            f"expected whole little-endian u64 words, found {len(data) % 8} trailing bytes",
        )
    return np.frombuffer(data, dtype="<u8").astype(np.uint64)


def read_page_hashes(path: Path, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """xpipe's compact page-hash file: one u64 per frame, frame 0 first (nothing to hash)."""
    h = read_u64(path)
    return np.arange(len(h), dtype=np.int64), h


def align_kpageflags(gfn: np.ndarray, kpageflags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flags, known) of each frame in ``gfn`` from a /proc/kpageflags copy (one u64 per frame).

    kpageflags covers frames up to the guest's max_pfn, which may stop short of
    the last frames or run past them: frames beyond have no flags (known False,
    flags 0).
    """
    known = gfn < len(kpageflags)
    if not len(kpageflags):
        return np.zeros(len(gfn), np.uint64), known
    flags = kpageflags[np.minimum(gfn, len(kpageflags) - 1)].astype(np.uint64, copy=False)
    flags[~known] = 0
    return flags, known
