"""The replay's numba-compiled loops: the sharing area's eviction over index-linked
lists, the open-addressing table that numbers contents (xpipe.sim.area) and the
merge of the domains' reads (xpipe.sim.schedule).

A module of its own so that importing the area, the policy registry or the
figures does not import numba (about half a second); the replay loads it at
its first lookup.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_NIL = -1  # (xpipe.sim.area._NIL)


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


@njit(cache=True, nogil=True, inline="always")
def _before(t, pos, a, b):
    """Whether domain a's next read comes before domain b's: earlier, or as early and a is first in the mix."""
    ta, tb = t[pos[a]], t[pos[b]]
    return ta < tb or (ta == tb and a < b)


@njit(cache=True, nogil=True)
def _merge(t, h, bounds, out_t, out_dom, out_h):
    """Merge the reads of domains i = bounds[i]:bounds[i + 1] of ``t`` and ``h``, each
    domain's in time order, into replay order: a heap of the domains with reads left,
    keyed by their next read (pos[i])."""
    k = bounds.shape[0] - 1
    pos = bounds[:-1].copy()
    heap = np.empty(k, dtype=np.int64)
    m = 0
    for i in range(k):
        if pos[i] < bounds[i + 1]:
            heap[m] = i
            j = m
            m += 1
            while j > 0 and _before(t, pos, heap[j], heap[(j - 1) // 2]):
                heap[j], heap[(j - 1) // 2] = heap[(j - 1) // 2], heap[j]
                j = (j - 1) // 2
    for r in range(out_t.shape[0]):
        i = heap[0]
        p = pos[i]
        out_t[r], out_dom[r], out_h[r] = t[p], i, h[p]
        pos[i] = p + 1
        if p + 1 == bounds[i + 1]:
            m -= 1
            heap[0] = heap[m]
        j = 0
        while True:  # sift the top down
            c = 2 * j + 1
            if c >= m:
                break
            if c + 1 < m and _before(t, pos, heap[c + 1], heap[c]):
                c += 1
            if not _before(t, pos, heap[c], heap[j]):
                break
            heap[j], heap[c] = heap[c], heap[j]
            j = c


@njit(cache=True, nogil=True)
def _inter_domain(inv, dom, groups):
    """Per content group among ``groups``: do its frames (``inv``: each frame's group, ``dom``:
    its domain) belong to more than one domain? One pass, no sort."""
    first = np.full(groups, -1, dtype=np.int64)
    inter = np.zeros(groups, dtype=np.bool_)
    for i in range(len(inv)):
        g = inv[i]
        if first[g] < 0:
            first[g] = dom[i]
        elif first[g] != dom[i]:
            inter[g] = True
    return inter
