"""The designated sharing area as a data structure: a fixed number of page
slots holding one copy of each content, with an eviction rule.

Contents are dense integer ids (0..n-1), not hashes: the replay maps every
hash it will ever look up to an id once (``dense_ids``), so the hot loop indexes
flat arrays instead of probing a hash table. The loops are compiled with numba
(xpipe.sim.loops, imported at the first lookup); all
the rules share one structure, frequency buckets of doubly linked lists:

- LRU: every entry stays in bucket 1; a hit moves it to the bucket's tail.
- FIFO: as LRU, but a hit does not move it.
- LFU: a hit moves the entry to the tail of the next bucket; eviction takes the
  head (least recently used) of the lowest non-empty bucket, so ties go to LRU.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

#: An empty link (the lists' ends); the loops use the same value.
_NIL = -1


def _first_seen_ids(keys: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.uint64]:
    """Write each of uint64 ``keys``' id by first occurrence to ``ids``. Returns the
    distinct keys in that order, the table mapping them to ids and its shift."""
    from xpipe.sim.loops import _number, _reinsert

    n = len(keys)
    uniq = np.empty(n, dtype=np.uint64)  # only the distinct keys' pages are ever touched
    # room before the table first grows (which rehashes every key held): all of a
    # small input's keys, else about n / 8, in at most 2**21 slots (32 MiB)
    bits = max(3, min(max(n // 8, min(n, 1 << 15)).bit_length(), 20) + 1)
    done = count = 0
    while True:
        # numpy allocates the table (not numba): it asks the kernel for huge pages,
        # which spares a TLB miss on most lookups of a large table
        table = np.zeros(2 << bits, dtype=np.uint64)
        shift = np.uint64(64 - bits)
        _reinsert(uniq[:count], table, shift)
        done, count = _number(keys, done, table, shift, uniq, count, ids)
        if done == n:
            return uniq[:count], table, shift
        bits += 1  # keep the load factor under 1/2: double and reinsert


#: dense_ids numbers this many pieces of a large input at once, one thread each
#: (numba releases the GIL); each piece has its own table.
_THREADS = max(1, min(4, os.cpu_count() or 1))
_PIECE_MIN = 1 << 18  # smaller pieces are not worth a thread


def dense_ids(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Same as ``np.unique(keys, return_inverse=True)`` for uint64 keys: (sorted
    distinct keys, each key's position among them as int64).

    A hash table numbers the keys in one pass and only the distinct keys are
    sorted, several times faster than np.unique's sort of every key when keys repeat.
    """
    from xpipe.sim.loops import _rank_ids

    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    ids = np.empty(len(keys), dtype=np.int64)
    bounds = np.linspace(0, len(keys), max(1, min(_THREADS, len(keys) // _PIECE_MIN)) + 1).astype(np.int64)
    pieces = [slice(lo, hi) for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist())]
    with ThreadPoolExecutor(len(pieces)) as pool:
        numbered = list(pool.map(lambda p: _first_seen_ids(keys[p], ids[p]), pieces))
        # the pieces' distinct keys, sorted, each once (a key may be in several pieces)
        universe = np.sort(np.concatenate([np.zeros(0, np.uint64)] + [uniq for uniq, _, _ in numbered]))
        first = np.ones(len(universe), dtype=bool)
        first[1:] = universe[1:] != universe[:-1]
        universe = universe[first]
        list(pool.map(lambda p, u: _rank_ids(ids[p], len(u[0]), universe, u[1], u[2]), pieces, numbered))
    return universe, ids


def group_ids(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Number equal keys alike: (each key's group id, by first occurrence; number of groups).

    The grouping np.unique gives, without sorting anything.
    """
    ids = np.empty(len(keys), dtype=np.int64)
    uniq, _, _ = _first_seen_ids(np.ascontiguousarray(keys, dtype=np.uint64), ids)
    return ids, len(uniq)


def _lru(a: SharingArea, ids: np.ndarray, hits: np.ndarray) -> None:
    from xpipe.sim.loops import _access_recency

    _access_recency(ids, a.capacity, True, a.in_area, a._link, a._head, a._tail, a._meta, hits)


def _fifo(a: SharingArea, ids: np.ndarray, hits: np.ndarray) -> None:
    from xpipe.sim.loops import _access_recency

    _access_recency(ids, a.capacity, False, a.in_area, a._link, a._head, a._tail, a._meta, hits)


def _lfu(a: SharingArea, ids: np.ndarray, hits: np.ndarray) -> None:
    from xpipe.sim.loops import _access_lfu

    _access_lfu(ids, a.capacity, a.in_area, a._link, a._freq, a._head, a._tail, a._meta, hits)


#: The eviction rules by name, in display order: a new rule is a loop in xpipe.sim.loops and
#: its entry here (the dsa policy, the config and the figures take them from here).
EVICTIONS = {"lru": _lru, "lfu": _lfu, "fifo": _fifo}


class SharingArea:
    """A content-addressed area of ``capacity`` page slots over ids 0..n_ids-1.

    ``max_accesses`` bounds LFU frequencies (one bucket per count).
    """

    def __init__(self, capacity: int, eviction: str, n_ids: int, max_accesses: int):
        if eviction not in EVICTIONS:
            raise ValueError(f"eviction must be one of {tuple(EVICTIONS)}, got {eviction!r}")
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0 pages, got {capacity}")
        self.capacity = int(capacity)
        self.eviction = eviction
        self.in_area = np.zeros(n_ids, dtype=np.bool_)
        # (previous, next) side by side: a list update touches one cache line
        # per entry, and int32 halves the memory when ids allow (3-10x faster
        # than two separate int64 arrays on a million ids).
        self._link = np.full((n_ids, 2), _NIL, dtype=np.int32 if n_ids < 2**31 else np.int64)
        self._freq = np.zeros(n_ids, dtype=np.int64)
        buckets = max_accesses + 2 if eviction == "lfu" else 2  # LFU: one list per count
        self._head = np.full(buckets, _NIL, dtype=np.int64)
        self._tail = np.full(buckets, _NIL, dtype=np.int64)
        self._meta = np.array([0, 1], dtype=np.int64)

    @property
    def used(self) -> int:
        """Slots holding a content now."""
        return int(self._meta[0])

    def access(self, ids: np.ndarray) -> np.ndarray:
        """Look up ``ids`` in order; returns a bool array, True where it was a hit."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        hits = np.empty(len(ids), dtype=np.bool_)
        EVICTIONS[self.eviction](self, ids, hits)
        return hits
