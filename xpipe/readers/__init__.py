"""Readers of every input format, behind one small interface each.

A snapshot reader takes a file and the threads it may hash with (0: one per
core) and returns ``(gfn, hash)``: the guest frame numbers it holds, in frame
order, and the xxh3-64 of each frame's 4 KiB.
Real captures and synthetic ones go through the same readers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from xpipe.readers.compact import read_u64
from xpipe.readers.memdump import read_elf_core, read_pmemsave

SnapshotReader = Callable[[Path, int], tuple[np.ndarray, np.ndarray]]


def read_page_hashes(path: Path, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """xpipe's compact page-hash file: one u64 per frame, frame 0 first (nothing to hash)."""
    h = read_u64(path)
    return np.arange(len(h), dtype=np.int64), h


#: Manifest snapshot kind -> its reader.
SNAPSHOT_READERS: dict[str, SnapshotReader] = {
    "pages": read_page_hashes,
    "pmemsave": read_pmemsave,
    "elf": read_elf_core,
}
