"""The designated sharing area as a data structure: a fixed number of page
slots holding one copy of each content, with an eviction rule.

Contents are dense integer ids (0..n-1), not hashes: the replay maps every
hash it will ever look up to an id once (a sort), so the hot loop indexes flat
arrays instead of probing a hash table. The loop is compiled with numba; all
three rules share one structure, frequency buckets of doubly linked lists:

- LRU: every entry stays in bucket 1; a hit moves it to the bucket's tail.
- FIFO: as LRU, but a hit does not move it.
- LFU: a hit moves the entry to the tail of the next bucket; eviction takes the
  head (least recently used) of the lowest non-empty bucket, so ties go to LRU.
"""

from __future__ import annotations

import numpy as np
from numba import njit

EVICTIONS = ("lru", "lfu", "fifo")
_LRU, _LFU, _FIFO = 0, 1, 2
_NIL = -1


@njit(cache=True, nogil=True)
def _unlink(i, f, prev, nxt, head, tail):
    p, n = prev[i], nxt[i]
    if p == _NIL:
        head[f] = n
    else:
        nxt[p] = n
    if n == _NIL:
        tail[f] = p
    else:
        prev[n] = p


@njit(cache=True, nogil=True)
def _append(i, f, prev, nxt, head, tail):
    t = tail[f]
    prev[i] = t
    nxt[i] = _NIL
    if t == _NIL:
        head[f] = i
    else:
        nxt[t] = i
    tail[f] = i


@njit(cache=True, nogil=True)
def _access(ids, capacity, mode, in_area, prev, nxt, freq, head, tail, meta, hits):
    """Look each id up in order: a hit updates its rank, a miss admits it.

    meta = [entries held, lowest non-empty bucket]. Writes hits[k] for ids[k].
    """
    size = meta[0]
    min_f = meta[1]
    for k in range(ids.shape[0]):
        i = ids[k]
        if in_area[i]:
            hits[k] = True
            if mode == _LRU:
                _unlink(i, 1, prev, nxt, head, tail)
                _append(i, 1, prev, nxt, head, tail)
            elif mode == _LFU:
                f = freq[i]
                _unlink(i, f, prev, nxt, head, tail)
                if head[f] == _NIL and min_f == f:
                    min_f = f + 1
                freq[i] = f + 1
                _append(i, f + 1, prev, nxt, head, tail)
            continue
        hits[k] = False
        if capacity == 0:
            continue
        if size >= capacity:
            victim = head[min_f]
            _unlink(victim, min_f, prev, nxt, head, tail)
            in_area[victim] = False
            size -= 1
        in_area[i] = True
        freq[i] = 1
        _append(i, 1, prev, nxt, head, tail)
        min_f = 1
        size += 1
    meta[0] = size
    meta[1] = min_f


class SharingArea:
    """A content-addressed area of ``capacity`` page slots over ids 0..n_ids-1.

    ``max_accesses`` bounds LFU frequencies (one bucket per count).
    """

    def __init__(self, capacity: int, eviction: str, n_ids: int, max_accesses: int):
        if eviction not in EVICTIONS:
            raise ValueError(f"eviction must be one of {EVICTIONS}, got {eviction!r}")
        if capacity < 0:
            raise ValueError(f"capacity must be >= 0 pages, got {capacity}")
        self.capacity = int(capacity)
        self.eviction = eviction
        self._mode = {"lru": _LRU, "lfu": _LFU, "fifo": _FIFO}[eviction]
        self.in_area = np.zeros(n_ids, dtype=np.bool_)
        self._prev = np.full(n_ids, _NIL, dtype=np.int64)
        self._next = np.full(n_ids, _NIL, dtype=np.int64)
        self._freq = np.zeros(n_ids, dtype=np.int64)
        buckets = max_accesses + 2 if eviction == "lfu" else 2
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
        _access(
            ids, self.capacity, self._mode, self.in_area, self._prev, self._next,
            self._freq, self._head, self._tail, self._meta, hits,
        )
        return hits
