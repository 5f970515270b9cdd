"""Content hashes of 4 KiB pages and disk blocks (xxh3-64, seed 0).

Every stage identifies a page or block by this hash; two pages share when
their hashes are equal (a 64-bit hash over a few million pages makes a false
match vanishingly rare, as in ESX's 64-bit hash; xpipe does no full compare).

The hashing runs in C (xpipe/_pagehash.c, XXH3 from the vendored xxhash.h)
with the GIL released, so files are hashed by one thread per core; the values
equal the Python xxhash package's ``xxh3_64_intdigest`` of each page.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from xpipe import _pagehash

PAGE_SIZE = 4096
PAGES_PER_MIB = (1 << 20) // PAGE_SIZE
#: Pages one thread hashes per call: a 32 MiB mmap window, unmapped after.
CHUNK_PAGES = 8192


def hash_pages(buffer) -> np.ndarray:
    """Hash each whole 4 KiB page of ``buffer`` (bytes-like); returns uint64s.

    A trailing partial page is an error: callers decide whether to pad.
    """
    view = memoryview(buffer).cast("B")
    out = np.empty(len(view) // PAGE_SIZE, dtype=np.uint64)
    _pagehash.hash_into(view, out)  # a trailing partial page: ValueError
    return out


#: Hash of a page of 4096 zero bytes.
ZERO_HASH = hash_pages(bytes(PAGE_SIZE))[0]


def hash_file(path: str | Path, ranges: Sequence[tuple[int, int]], threads: int = 0) -> np.ndarray:
    """Hashes of the pages of ``path`` in ``ranges`` ((byte offset, pages) each), in order.

    Callers check the file's layout first (with errors that say what the file
    should be); a range past the end of the file is a ValueError. ``threads``:
    0 for one per core.
    """
    pieces, at = [], 0
    for offset, pages in ranges:
        pieces += [(offset + c * PAGE_SIZE, min(CHUNK_PAGES, pages - c), at + c)
                   for c in range(0, pages, CHUNK_PAGES)]
        at += pages
    table = np.array(pieces, dtype=np.int64).reshape(-1, 3)
    out = np.empty(at, dtype=np.uint64)
    next_piece = np.zeros(1, dtype=np.int64)  # taken atomically in C: no GIL between pieces
    threads = min(threads or len(os.sched_getaffinity(0)), len(pieces))
    # Even one thread runs in the pool: this thread waits in result(), where
    # Ctrl-C arrives, instead of inside C until the whole file is hashed.
    with open(path, "rb") as f:
        with ThreadPoolExecutor(max(threads, 1), thread_name_prefix="hash") as pool:
            running = [pool.submit(_pagehash.hash_pieces, f.fileno(), table, next_piece, out)
                       for _ in range(max(threads, 1))]
            try:
                for r in running:
                    r.result()
            finally:  # on an error or Ctrl-C, the other threads stop after their piece
                next_piece[0] = len(pieces)
    return out
