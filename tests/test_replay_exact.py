"""Exact counts for every policy on a trace small enough to work out by hand.

Two domains, A and B, four frames each, snapshots at t=0 and t=10.

    frame        0        1        2          3
    A  t=0    Z zero   x file   y file     p anon
    B  t=0    Z zero   x file   q anon     p anon
    A  t=10   Z zero   x file   w anon     p anon     (A2 written: y -> w)
    B  t=10   x file   x file   q anon     p anon     (B0 written: Z -> x, now page cache)

Disk reads: A reads x at t=1, B reads x at t=2, A reads y at t=3, B reads y
at t=12 (after the last snapshot). Z is the zero page.
"""

import numpy as np
import polars as pl
import pytest

from xpipe.hashing import ZERO_HASH
from xpipe.schemas import PAGE_TYPES
from xpipe.sim.metrics import capacity, peak_footprint
from xpipe.sim.replay import DomainTrace, RunSpec, replay

Z = ZERO_HASH
x, y, p, q, w = (np.uint64(v) for v in (11, 12, 13, 14, 15))
T = {name: PAGE_TYPES.index(name) for name in PAGE_TYPES}


def _domain(name, snaps, reads):
    hashes = [np.array([h for h, _ in s], dtype=np.uint64) for s in snaps]
    types = [np.array([T[t] for _, t in s], dtype=np.uint8) for s in snaps]
    return DomainTrace(
        id=name,
        times=np.array([0.0, 10.0]),
        load=lambda k: (hashes[k], types[k]),
        frames=4,
        read_times=np.array([t for t, _ in reads], dtype=float),
        read_hashes=np.array([h for _, h in reads], dtype=np.uint64),
    )


def mix():
    a = _domain(
        "A",
        [
            [(Z, "zero"), (x, "file_data"), (y, "file_data"), (p, "anonymous")],
            [(Z, "zero"), (x, "file_data"), (w, "anonymous"), (p, "anonymous")],
        ],
        [(1.0, x), (3.0, y)],
    )
    b = _domain(
        "B",
        [
            [(Z, "zero"), (x, "file_data"), (q, "anonymous"), (p, "anonymous")],
            [(x, "file_data"), (x, "file_data"), (q, "anonymous"), (p, "anonymous")],
        ],
        [(2.0, x), (12.0, y)],
    )
    return [a, b]


def totals(run_id):
    tl = replay(mix(), RunSpec.parse(run_id)).timeline
    per_time = (
        tl.group_by("time_s", maintain_order=True)
        .agg(
            fp=pl.col("private_pages").sum() + pl.col("area_mapped").first(),
            fp_reserved=pl.col("private_pages").sum()
            + pl.max_horizontal(pl.col("area_reserved").first(), pl.col("area_used").first()),
        )
        .sort("time_s")
    )
    return (
        per_time["fp"].to_list(),
        per_time["fp_reserved"].to_list(),
        int(tl["reads_issued"].sum()),
        int(tl["reads_avoided"].sum()),
        int(tl["cow_breaks"].sum()),
    )


# run id -> (footprint at t=0, t=10), (with whole area), reads issued, avoided, COW breaks
EXPECTED = {
    "none": ([8, 8], [8, 8], 4, 0, 0),
    # t=0: both zero frames on one page; t=10 only A0 is zero; B0's write breaks sharing.
    "zero": ([7, 8], [7, 8], 4, 0, 1),
    # distinct contents: {Z,x,y,p,q} and {Z,x,w,p,q}; x and y each re-read once.
    "oracle": ([5, 5], [5, 5], 2, 2, 1),
    # 80 visits over 8 frames before t=10: all mergeable; B0's write breaks its merge;
    # at t=10 x (A1,B1) and p (A3,B3) are merged. No read saved.
    "scan-r8": ([8, 6], [8, 6], 4, 0, 1),
    # area {x, y}: B's x read and B's late y read are hits; A1, B0, B1 map x.
    "dsa-lru-a2": ([8, 6], [10, 7], 2, 2, 0),
    # an empty area is no sharing
    "dsa-lru-a0": ([8, 8], [8, 8], 4, 0, 0),
    # one slot: y evicts x before t=10, so nothing is mapped; both B reads hit.
    "dsa-lru-a1": ([8, 8], [9, 9], 2, 2, 0),
    "dsa-fifo-a1": ([8, 8], [9, 9], 2, 2, 0),
    # with the zero page: t=0 maps A0,B0 on Z; at t=10 Z re-enters and evicts x
    # (least recent), so only A0 maps Z; B0's write breaks its mapping.
    "dsa-lru-a2-z": ([7, 8], [8, 9], 2, 2, 1),
    # every 2nd snapshot counted from the last: only t=10 is replayed, so nothing
    # was shared before it to break, and the scanner has had no time to visit.
    "oracle-e2": ([5], [5], 2, 2, 0),
    "dsa-lru-a2-e2": ([6], [7], 2, 2, 0),
    "scan-r8-e2": ([8], [8], 4, 0, 0),
}


@pytest.mark.parametrize("run_id", sorted(EXPECTED))
def test_exact_counts(run_id):
    assert totals(run_id) == EXPECTED[run_id]


def test_slow_scanner_merges_nothing_on_a_single_visit():
    # 1 page/s over 4 s: A0..A3 are each visited once, none twice, so nothing merges.
    doms = mix()
    for d in doms:
        d.times = np.array([0.0, 4.0])
    tl = replay(doms, RunSpec("scan", scan_pages_per_s=1)).timeline
    assert peak_footprint(tl) == 8


def test_lfu_keeps_the_frequent_content():
    # Reads: A x@1 (miss), B x@2 (hit), A y@3 (miss), B z@4 (miss, area of 2 is full):
    # LRU and FIFO evict x (oldest), LFU evicts y (read once), so only LFU maps x at t=10.
    doms = mix()
    doms[1].read_hashes = np.array([x, np.uint64(99)], dtype=np.uint64)
    doms[1].read_times = np.array([2.0, 4.0])
    mapped_at_10 = {}
    for ev in ("lru", "lfu", "fifo"):
        tl = replay(doms, RunSpec("dsa", eviction=ev, area_pages=2)).timeline
        assert int(tl["reads_avoided"].sum()) == 1
        mapped_at_10[ev] = int(tl.filter(pl.col("time_s") == 10.0)["shared_mapped"].sum())
    assert mapped_at_10 == {"lru": 0, "lfu": 3, "fifo": 0}


def test_shared_page_types_by_scope():
    types = replay(mix(), RunSpec.parse("oracle")).types
    got = {(r["page_type"], r["scope"]): r["pages_saved"] for r in types.iter_rows(named=True)}
    # t=0: Z, x, p each on two domains (1 page saved each); t=10: x on three frames
    # (2 saved), p on two (1 saved); mean over the two times.
    assert got == pytest.approx({("zero", "inter"): 0.5, ("file_data", "inter"): 1.5,
                                 ("anonymous", "inter"): 1.0})


def test_capacity_counts_prefixes():
    assert capacity(mix(), RunSpec.parse("oracle")) == [(1, 4), (2, 5)]
    assert capacity(mix(), RunSpec.parse("none")) == [(1, 4), (2, 8)]


def test_run_ids_round_trip():
    for run_id in EXPECTED:
        assert RunSpec.parse(run_id).run_id == run_id
    with pytest.raises(ValueError, match="expected none, zero"):
        RunSpec.parse("dsa-mru-a3")


def test_sparser_snapshots_are_compared_with_the_oracle_at_the_same_times():
    from xpipe.sim.metrics import summarise

    full = replay(mix(), RunSpec.parse("oracle")).timeline
    sparse = replay(mix(), RunSpec.parse("oracle-e2")).timeline
    row = summarise(sparse, full, None, RunSpec.parse("oracle-e2"), "m", False, [1]).row(0, named=True)
    assert row["share_of_oracle"] == pytest.approx(1.0) and row["snapshot_every"] == 2
    assert row["savings"] == pytest.approx(1 - 5 / 8)


def test_capacity_takes_the_whole_mix_from_its_timeline():
    spec = RunSpec.parse("oracle")
    whole = replay(mix(), spec).timeline
    assert capacity(mix(), spec, whole=whole) == capacity(mix(), spec) == [(1, 4), (2, 5)]
