"""The designated sharing area as a data structure: a fixed number of page
slots holding one copy of each content, with an eviction rule.

Contents are dense integer ids (0..n-1), not hashes: the replay maps every
hash it will ever look up to an id once (``dense_ids``), so the hot loop indexes
flat arrays instead of probing a hash table. The loop is compiled with numba; all
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
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

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


@intrinsic
def _prefetch(typingctx, arr, index):
    """Ask the CPU to start loading ``arr[index]`` into the cache (llvm.prefetch, read, keep)."""

    def codegen(context, builder, signature, args):
        aryty = signature.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, [args[1]], wraparound=False)
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(arr, index), codegen


#: How many keys ahead the numbering prefetches its table slot: a lookup misses
#: the cache on a large table, and the prefetches let several misses overlap.
_AHEAD = 16


@njit(cache=True, nogil=True, inline="always")
def _slot(key, shift):
    # Fibonacci hashing, the top bits of the product: spreads small or patterned
    # keys (not only xxh3 hashes) over the table.
    return (key * np.uint64(0x9E3779B97F4A7C15)) >> shift


@njit(cache=True, nogil=True)
def _number(keys, start, table, shift, uniq, count, ids):
    """Number ``keys[start:]`` by first occurrence into ``ids``, new keys appended to
    ``uniq`` (``count`` so far). Stops once the table is half full: returns (keys
    done, count). ``table`` is open addressing, linear probing: (key, id + 1) per
    slot side by side, so a lookup reads one cache line; id + 1 == 0 marks it empty."""
    n = keys.shape[0]
    mask = np.uint64(table.shape[0] // 2 - 1)
    half = table.shape[0] // 4
    for k in range(start, n):
        if k + _AHEAD < n:
            _prefetch(table, 2 * _slot(keys[k + _AHEAD], shift))
        key = keys[k]
        s = _slot(key, shift)
        while True:
            tag = table[2 * s + 1]
            if tag == 0:
                table[2 * s] = key
                table[2 * s + 1] = count + 1
                uniq[count] = key
                ids[k] = count
                count += 1
                if count > half:
                    return k + 1, count
                break
            if table[2 * s] == key:
                ids[k] = tag - 1
                break
            s = (s + np.uint64(1)) & mask
    return n, count


@njit(cache=True, nogil=True)
def _reinsert(uniq, table, shift):
    """Put ``uniq`` (distinct keys, id = position) into an empty ``table``."""
    mask = np.uint64(table.shape[0] // 2 - 1)
    for j in range(uniq.shape[0]):
        s = _slot(uniq[j], shift)
        while table[2 * s + 1] != 0:
            s = (s + np.uint64(1)) & mask
        table[2 * s] = uniq[j]
        table[2 * s + 1] = j + 1


@njit(cache=True, nogil=True)
def _find(key, table, shift):
    """The id ``table`` holds for ``key``; -1 when it holds none."""
    mask = np.uint64(table.shape[0] // 2 - 1)
    s = _slot(key, shift)
    while True:
        tag = table[2 * s + 1]
        if tag == 0:
            return np.int64(-1)
        if table[2 * s] == key:
            return np.int64(tag - 1)
        s = (s + np.uint64(1)) & mask


@njit(cache=True, nogil=True)
def _rank_ids(ids, count, universe, table, shift):
    """Replace each first-seen id in ``ids`` (``count`` of them, in ``table``) by its
    key's position in ``universe`` (sorted, holding every key): cheaper than argsorting."""
    rank = np.empty(count, dtype=np.int64)
    for r in range(universe.shape[0]):
        if r + _AHEAD < universe.shape[0]:
            _prefetch(table, 2 * _slot(universe[r + _AHEAD], shift))
        j = _find(universe[r], table, shift)
        if j >= 0:
            rank[j] = r
    for k in range(ids.shape[0]):
        ids[k] = rank[ids[k]]


def _first_seen_ids(keys: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.uint64]:
    """Write each of uint64 ``keys``' id by first occurrence to ``ids``. Returns the
    distinct keys in that order, the table mapping them to ids and its shift."""
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
