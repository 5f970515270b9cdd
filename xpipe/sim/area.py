"""The designated sharing area as a data structure: a fixed number of page
slots holding one copy of each content, with an eviction rule.

Contents are dense integer ids (0..n-1), not hashes: the replay maps every
hash it will ever look up to an id once (a sort), so the hot loop indexes flat
arrays instead of probing a hash table. The loop is compiled with numba; all
the rules share one structure, frequency buckets of doubly linked lists:

- LRU: every entry stays in bucket 1; a hit moves it to the bucket's tail.
- FIFO: as LRU, but a hit does not move it.
- LFU: a hit moves the entry to the tail of the next bucket; eviction takes the
  head (least recently used) of the lowest non-empty bucket, so ties go to LRU.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_NIL = -1


@njit(cache=True, nogil=True)
def _unlink(i, f, link, head, tail):
    p, n = link[i, 0], link[i, 1]
    if p == _NIL:
        head[f] = n
    else:
        link[p, 1] = n
    if n == _NIL:
        tail[f] = p
    else:
        link[n, 0] = p


@njit(cache=True, nogil=True)
def _append(i, f, link, head, tail):
    t = tail[f]
    link[i, 0] = t
    link[i, 1] = _NIL
    if t == _NIL:
        head[f] = i
    else:
        link[t, 1] = i
    tail[f] = i


@njit(cache=True, nogil=True)
def _access_lfu(ids, capacity, in_area, link, freq, head, tail, meta, hits):
    """LFU: look each id up in order; a hit moves it to the next frequency
    bucket, a miss evicts the oldest entry of the lowest bucket and admits it.

    link[i] = (previous, next) in i's bucket list. meta = [entries held, lowest
    non-empty bucket]. Writes hits[k] for ids[k].
    """
    size = meta[0]
    min_f = meta[1]
    for k in range(ids.shape[0]):
        i = ids[k]
        if in_area[i]:
            hits[k] = True
            f = freq[i]
            _unlink(i, f, link, head, tail)
            if head[f] == _NIL and min_f == f:
                min_f = f + 1
            freq[i] = f + 1
            _append(i, f + 1, link, head, tail)
            continue
        hits[k] = False
        if capacity == 0:
            continue
        if size >= capacity:
            victim = head[min_f]
            _unlink(victim, min_f, link, head, tail)
            in_area[victim] = False
            size -= 1
        in_area[i] = True
        freq[i] = 1
        _append(i, 1, link, head, tail)
        min_f = 1
        size += 1
    meta[0] = size
    meta[1] = min_f


@njit(cache=True, nogil=True)
def _access_recency(ids, capacity, move_on_hit, in_area, link, head, tail, meta, hits):
    """LRU (move_on_hit) and FIFO: one list (bucket 1), the oldest entry first; its
    ends are kept in locals and no frequencies are written, which keeps the loop fast."""
    size = meta[0]
    first, last = head[1], tail[1]
    for k in range(ids.shape[0]):
        i = ids[k]
        if in_area[i]:
            hits[k] = True
            if move_on_hit and i != last:  # unlink i (it has a next: it is not last), append it
                p, n = link[i, 0], link[i, 1]
                if p == _NIL:
                    first = n
                else:
                    link[p, 1] = n
                link[n, 0] = p
                link[i, 0] = last
                link[i, 1] = _NIL
                link[last, 1] = i
                last = i
            continue
        hits[k] = False
        if capacity == 0:
            continue
        if size >= capacity:  # evict the head
            victim = first
            first = link[victim, 1]
            if first == _NIL:
                last = _NIL
            else:
                link[first, 0] = _NIL
            in_area[victim] = False
            size -= 1
        in_area[i] = True
        link[i, 0] = last
        link[i, 1] = _NIL
        if last == _NIL:
            first = i
        else:
            link[last, 1] = i
        last = i
        size += 1
    head[1], tail[1] = first, last
    meta[0] = size


@njit(cache=True, nogil=True)
def _slot(key, mask):
    # Fibonacci hashing: spreads small or patterned keys (not only xxh3 hashes) over the table.
    return ((key * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(32)) & mask


@njit(cache=True, nogil=True)
def _first_seen_ids(keys):
    """(id of each key by first occurrence, the distinct keys in that order), via open addressing."""
    n = keys.shape[0]
    uniq = np.empty(n, dtype=np.uint64)
    ids = np.empty(n, dtype=np.int64)
    cap = 1 << 16
    table = np.full(cap, -1, dtype=np.int64)  # slot -> id, -1 empty; key is uniq[id]
    count = 0
    for k in range(n):
        key = keys[k]
        mask = np.uint64(cap - 1)
        s = _slot(key, mask)
        while True:
            j = table[s]
            if j == -1:
                table[s] = count
                uniq[count] = key
                ids[k] = count
                count += 1
                break
            if uniq[j] == key:
                ids[k] = j
                break
            s = (s + np.uint64(1)) & mask
        if 2 * count > cap:  # keep the load factor under 1/2: double and reinsert
            cap *= 2
            table = np.full(cap, -1, dtype=np.int64)
            mask = np.uint64(cap - 1)
            for j in range(count):
                s = _slot(uniq[j], mask)
                while table[s] != -1:
                    s = (s + np.uint64(1)) & mask
                table[s] = j
    return ids, uniq[:count]


def dense_ids(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Same as ``np.unique(keys, return_inverse=True)`` for uint64 keys: (sorted
    distinct keys, each key's position among them as int64).

    A hash table numbers the keys in one pass and only the distinct keys are
    sorted, several times faster than np.unique's sort of every key when keys repeat.
    """
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    first_ids, uniq = _first_seen_ids(keys)
    order = np.argsort(uniq)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq), dtype=np.int64)
    return uniq[order], rank[first_ids]


def group_ids(keys: np.ndarray) -> tuple[np.ndarray, int]:
    """Number equal keys alike: (each key's group id, by first occurrence; number of groups).

    The grouping np.unique gives, without sorting anything.
    """
    ids, uniq = _first_seen_ids(np.ascontiguousarray(keys, dtype=np.uint64))
    return ids, len(uniq)


def _lru(a: SharingArea, ids: np.ndarray, hits: np.ndarray) -> None:
    _access_recency(ids, a.capacity, True, a.in_area, a._link, a._head, a._tail, a._meta, hits)


def _fifo(a: SharingArea, ids: np.ndarray, hits: np.ndarray) -> None:
    _access_recency(ids, a.capacity, False, a.in_area, a._link, a._head, a._tail, a._meta, hits)


def _lfu(a: SharingArea, ids: np.ndarray, hits: np.ndarray) -> None:
    _access_lfu(ids, a.capacity, a.in_area, a._link, a._freq, a._head, a._tail, a._meta, hits)


#: The eviction rules by name, in display order: a new rule is a loop above and
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
