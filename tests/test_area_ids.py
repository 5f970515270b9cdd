"""The replay's content numbering equals numpy's: dense_ids is np.unique with
return_inverse, group_ids numbers by first occurrence, and the merge of the
domains' reads is a stable sort of every read by time."""

import numpy as np
import pytest

from xpipe.hashing import ZERO_HASH
from xpipe.sim import area
from xpipe.sim.area import dense_ids, group_ids
from xpipe.sim.schedule import _merged_reads, schedule
from xpipe.sim.trace import DomainTrace

TOP = np.uint64(2**64 - 1)


def _key_sets():
    rng = np.random.default_rng(7)
    yield np.zeros(0, np.uint64)
    yield np.array([5], np.uint64)
    yield np.array([0, TOP, 0, 5, TOP, 0], np.uint64)
    yield np.zeros(1000, np.uint64)  # one key, many times
    yield np.full(1000, TOP, np.uint64)
    yield rng.integers(0, 50, 100_000).astype(np.uint64)  # many duplicates
    yield rng.integers(0, 2**64 - 1, 70_000, dtype=np.uint64, endpoint=True)  # full range, the table grows
    yield np.arange(100_000, dtype=np.uint64)  # small keys
    yield np.arange(100_000, dtype=np.uint64) << np.uint64(40)  # patterned: equal low bits
    yield TOP - np.arange(50_000, dtype=np.uint64)[::-1].repeat(3)  # near the top, sorted runs
    pool = rng.integers(0, 2**64 - 1, 40_000, dtype=np.uint64, endpoint=True)
    yield np.concatenate([pool[rng.zipf(1.3, 300_000) % len(pool)], [np.uint64(0), TOP]])


@pytest.mark.parametrize("keys", list(_key_sets()), ids=lambda k: f"{len(k)}keys")
def test_dense_ids_is_np_unique(keys):
    universe, ids = dense_ids(keys)
    expect_u, expect_ids = np.unique(keys, return_inverse=True)
    assert universe.dtype == np.uint64 and ids.dtype == np.int64
    np.testing.assert_array_equal(universe, expect_u)
    np.testing.assert_array_equal(ids, expect_ids)


@pytest.mark.parametrize("threads", [2, 3, 4])
def test_dense_ids_in_pieces(monkeypatch, threads):
    """Large inputs are numbered in pieces, each with its own table: keys in one piece
    only, in all pieces, and at the pieces' edges get the same ids."""
    monkeypatch.setattr(area, "_THREADS", threads)
    monkeypatch.setattr(area, "_PIECE_MIN", 1000)
    rng = np.random.default_rng(threads)
    keys = np.concatenate([rng.integers(0, 2**64 - 1, 5000, dtype=np.uint64, endpoint=True),  # first piece only
                           rng.integers(0, 300, 20_000).astype(np.uint64),  # everywhere
                           [np.uint64(0), TOP, np.uint64(0)]])
    rng.shuffle(keys[5000:])
    universe, ids = dense_ids(keys)
    expect_u, expect_ids = np.unique(keys, return_inverse=True)
    np.testing.assert_array_equal(universe, expect_u)
    np.testing.assert_array_equal(ids, expect_ids)


@pytest.mark.parametrize("keys", list(_key_sets()), ids=lambda k: f"{len(k)}keys")
def test_group_ids_by_first_occurrence(keys):
    ids, groups = group_ids(keys)
    u, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    # group g is the g-th distinct key met
    by_first = np.empty(len(u), np.int64)
    by_first[np.argsort(first)] = np.arange(len(u))
    assert groups == len(u)
    np.testing.assert_array_equal(ids, by_first[inverse])


def _lexsorted(domains):
    t = np.concatenate([d.read_times for d in domains])
    dom = np.concatenate([np.full(len(d.read_times), i) for i, d in enumerate(domains)])
    h = np.concatenate([d.read_hashes for d in domains]).astype(np.uint64)
    order = np.lexsort((dom, t))
    return t[order], dom[order], h[order]


def _domain(i, times, hashes):
    return DomainTrace(id=f"d{i}", times=np.zeros(0), load=lambda k: None, frames=0,
                       read_times=np.asarray(times, dtype=float), read_hashes=np.asarray(hashes, dtype=np.uint64))


@pytest.mark.parametrize("seed", range(40))
def test_merged_reads_is_a_stable_sort_by_time(seed):
    rng = np.random.default_rng(seed)
    domains = []
    for i in range(int(rng.integers(1, 9))):
        n = int(rng.integers(0, 60))
        t = rng.integers(0, 12, n).astype(float)  # many equal times, within and across domains
        if rng.random() < 0.7:
            t = np.sort(t)
        domains.append(_domain(i, t, rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)))
    t, dom, h = _merged_reads(domains)
    et, edom, eh = _lexsorted(domains)
    np.testing.assert_array_equal(t, et)
    np.testing.assert_array_equal(dom, edom)
    np.testing.assert_array_equal(h[:-1], eh)
    assert h[-1] == ZERO_HASH


def test_schedule_ids_are_positions_in_universe():
    rng = np.random.default_rng(3)
    pool = rng.integers(0, 2**64 - 1, 500, dtype=np.uint64, endpoint=True)
    domains = [_domain(i, np.sort(rng.uniform(0, 100, 4000)), pool[rng.integers(0, 500, 4000)]) for i in range(3)]
    s = schedule(domains, 1)
    np.testing.assert_array_equal(s.universe, np.unique(np.append(s.read_hash, ZERO_HASH)))
    np.testing.assert_array_equal(s.universe[s.read_ids], s.read_hash)
    assert s.read_ids.dtype == np.int64 and len(s.read_ids) == 12_000
