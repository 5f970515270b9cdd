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
from xpipe.sim.metrics import domains_per_host, peak_footprint, summarise
from xpipe.sim.replay import DomainTrace, kept_snapshots, replay
from xpipe.sim.runs import RunSpec
from xpipe.sim.sweep import prefix_peaks

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
    "scan-r8-snapshot": ([8, 6], [8, 6], 4, 0, 1),
    # area {x, y}: B's x read and B's late y read are hits; A1, B0, B1 map x.
    "dsa-lru-0.0078125mib": ([8, 6], [10, 7], 2, 2, 0),
    # an empty area is no sharing
    "dsa-lru-0mib": ([8, 8], [8, 8], 4, 0, 0),
    # one slot: y evicts x before t=10, so nothing is mapped; both B reads hit.
    "dsa-lru-0.00390625mib": ([8, 8], [9, 9], 2, 2, 0),
    "dsa-fifo-0.00390625mib": ([8, 8], [9, 9], 2, 2, 0),
    # with the zero page: t=0 maps A0,B0 on Z; at t=10 Z re-enters and evicts x
    # (least recent), so only A0 maps Z; B0's write breaks its mapping.
    "dsa-lru-0.0078125mib-z": ([7, 8], [8, 9], 2, 2, 1),
    # with two snapshots every 2nd keeps both (the first and last are always kept)
    "oracle-e2": ([5, 5], [5, 5], 2, 2, 1),
    "dsa-lru-0.0078125mib-e2": ([8, 6], [10, 7], 2, 2, 0),
    # from boot: the first snapshot is at t=0, so the scanner has had no time before it
    "scan-r8-boot": ([8, 6], [8, 6], 4, 0, 1),
}


@pytest.mark.parametrize("run_id", sorted(EXPECTED))
def test_exact_counts(run_id):
    assert totals(run_id) == EXPECTED[run_id]


def test_slow_scanner_merges_nothing_on_a_single_visit():
    # 1 page/s over 4 s: A0..A3 are each visited once, none twice, so nothing merges.
    doms = mix()
    for d in doms:
        d.times = np.array([0.0, 4.0])
    tl = replay(doms, RunSpec.make("scan", scan_pages_per_s=1, scan_start="snapshot")).timeline
    assert peak_footprint(tl) == 8


@pytest.mark.parametrize("start, footprints", [("boot", [5, 6]), ("snapshot", [8, 6])])
def test_scanner_from_boot_has_merged_by_the_first_snapshot(start, footprints):
    # Snapshots at t=2 and t=10, 8 pages/s. From boot the scanner visits every frame
    # twice before t=2 (16 visits, first snapshot's content): Z, x and p merge
    # (8 - 6 + 3 = 5). From the first snapshot nothing is merged at t=2. By t=10
    # both have visited everything twice; A2 and B0 were written, so x (A1, B1)
    # and p (A3, B3) are merged (8 - 4 + 2 = 6) and B0's write breaks Z's merge.
    doms = mix()
    for d in doms:
        d.times = np.array([2.0, 10.0])
    tl = replay(doms, RunSpec.make("scan", scan_pages_per_s=8, scan_start=start)).timeline
    fp = (tl.group_by("time_s").agg(fp=pl.col("private_pages").sum() + pl.col("area_mapped").first())
          .sort("time_s")["fp"].to_list())
    assert fp == footprints
    assert int(tl["cow_breaks"].sum()) == 1


def test_lfu_keeps_the_frequent_content():
    # Reads: A x@1 (miss), B x@2 (hit), A y@3 (miss), B z@4 (miss, area of 2 is full):
    # LRU and FIFO evict x (oldest), LFU evicts y (read once), so only LFU maps x at t=10.
    doms = mix()
    doms[1].read_hashes = np.array([x, np.uint64(99)], dtype=np.uint64)
    doms[1].read_times = np.array([2.0, 4.0])
    mapped_at_10 = {}
    for ev in ("lru", "lfu", "fifo"):
        tl = replay(doms, RunSpec.make("dsa", eviction=ev, area_mib=2 / 256, admit_zero=False)).timeline
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


def test_prefixes_count_the_first_k_domains():
    assert prefix_peaks(mix(), RunSpec.parse("oracle"), replay(mix(), RunSpec.parse("oracle")).timeline) \
        == [(1, 4), (2, 5)]
    assert prefix_peaks(mix(), RunSpec.parse("none"), replay(mix(), RunSpec.parse("none")).timeline) \
        == [(1, 4), (2, 8)]
    # a host of 4 pages (1/64 MiB is not a size; use pages via MiB * 256): 1 MiB holds both
    assert domains_per_host([(1, 4), (2, 300)], 1) == 1 and domains_per_host([(1, 4), (2, 8)], 1) == 2


def test_run_ids_round_trip():
    for run_id in EXPECTED:
        assert RunSpec.parse(run_id).run_id == run_id
    with pytest.raises(ValueError, match="expected one of none; zero"):
        RunSpec.parse("dsa-mru-3mib")
    with pytest.raises(ValueError, match="not a whole number of 4 KiB pages"):
        RunSpec.parse("dsa-lru-0.001mib")


def test_every_interval_covers_the_same_window():
    t = np.array([40.0, 70.0, 100.0, 130.0])
    assert t[kept_snapshots(t, 1)].tolist() == [40, 70, 100, 130]
    assert t[kept_snapshots(t, 2)].tolist() == [40, 100, 130]
    assert t[kept_snapshots(t, 3)].tolist() == [40, 130]
    assert t[kept_snapshots(t, 9)].tolist() == [40, 130]


def test_every_k_th_snapshot_of_each_domain_even_when_their_times_differ():
    # A at 10, 30, 50 and B at 20, 40, 60: every 2nd keeps A's 10, 50 and B's 20, 60,
    # so A's snapshot at 30 and B's at 40 are never loaded.
    loads = []
    doms = []
    for name, times in (("A", [10.0, 30.0, 50.0]), ("B", [20.0, 40.0, 60.0])):
        doms.append(DomainTrace(id=name, times=np.array(times), frames=1,
                                load=lambda k, n=name: loads.append((n, k)) or (np.array([k + 1], np.uint64),
                                                                               np.array([0], np.uint8))))
    tl = replay(doms, RunSpec.parse("none-e2")).timeline
    assert sorted(set(loads)) == [("A", 0), ("A", 2), ("B", 0), ("B", 2)]
    assert sorted(tl["time_s"].unique().to_list()) == [10, 20, 50, 60]


def test_sparser_snapshots_are_compared_with_the_oracle_at_the_same_times():
    doms = mix()
    for d in doms:  # a third snapshot, equal to the second, so every 2nd keeps t=0 and t=20
        d.times = np.array([0.0, 10.0, 20.0])
        d.load = (lambda load: lambda k: load(min(k, 1)))(d.load)
    full = replay(doms, RunSpec.parse("oracle")).timeline
    sparse = replay(doms, RunSpec.parse("oracle-e2")).timeline
    row = summarise(sparse, full, None, True, False, [1]).row(0, named=True)
    assert row["share_of_oracle"] == pytest.approx(1.0)
    assert row["snapshots"] == 2 and row["snapshot_interval_s"] == 20.0
    assert row["savings"] == pytest.approx(1 - 5 / 8)


@pytest.mark.parametrize("before, after, cow", [
    ((5, 5), (9, 10), 2),  # merged at t=5, both written by t=10: two COW breaks
    ((5, 6), (9, 9), 0),  # never merged (different content), so writing breaks nothing
])
def test_scanner_breaks_what_it_had_merged(before, after, cow):
    # One frame per domain, 100 pages/s from boot: both visited many times before t=5.
    doms = [DomainTrace(id=n, times=np.array([5.0, 10.0]), frames=1,
                        load=lambda k, b=b, a=a: (np.array([(b, a)[k]], np.uint64),
                                                  np.array([T["anonymous"]], np.uint8)))
            for n, b, a in zip("AB", before, after)]
    tl = replay(doms, RunSpec.make("scan", scan_pages_per_s=100, scan_start="boot")).timeline
    assert int(tl["cow_breaks"].sum()) == cow
    # after the writes nothing is merged: the new contents were not seen twice yet
    assert int(tl.filter(pl.col("time_s") == 10.0)["shared_mapped"].sum()) == 0


def _io_only(name, reads):
    return DomainTrace(id=name, times=np.zeros(0), frames=0, load=lambda k: None,
                       read_times=np.array([t for t, _ in reads], dtype=float),
                       read_hashes=np.array([h for _, h in reads], dtype=np.uint64))


@pytest.mark.parametrize("run_id, avoided", [
    ("oracle", 2),  # B's x and y were read before
    ("dsa-lru-0.00390625mib", 0),  # one slot: y evicts x, and B's x evicts y
    ("dsa-lru-0.0078125mib", 2),  # two slots hold both
    ("none", 0),
])
def test_io_only_domains_replay_their_reads_and_leave_memory_out(run_id, avoided):
    # A reads x at 1 s and y at 2 s; B reads x at 3 s and y at 4 s; no memory snapshots.
    doms = [_io_only("A", [(1.0, x), (2.0, y)]), _io_only("B", [(3.0, x), (4.0, y)])]
    spec = RunSpec.parse(run_id)
    tl = replay(doms, spec).timeline
    assert int(tl["reads_avoided"].sum()) == avoided and int(tl["reads_issued"].sum()) == 4 - avoided
    assert tl["private_pages"].sum() == 0 and tl["time_s"].unique().to_list() == [4.0]
    oracle = replay(doms, RunSpec.parse("oracle")).timeline
    row = summarise(tl, oracle, [(1, 0), (2, 0)], spec.info.has_area, False, [1]).row(0, named=True)
    assert row["savings"] is None and row["domains_per_host"] is None
    assert row["io_reduction"] == avoided / 4 and row["io_reduction_ideal"] == 0.5
    assert row["left_out"] == "memory: the mix's domains have no memory snapshots"


def test_memory_only_domains_leave_io_out():
    doms = mix()
    for d in doms:
        d.read_times, d.read_hashes = np.zeros(0), np.zeros(0, dtype=np.uint64)
    tl = replay(doms, RunSpec.parse("oracle")).timeline
    row = summarise(tl, tl, None, False, False, [1]).row(0, named=True)
    assert row["savings"] == pytest.approx(1 - 5 / 8) and row["io_reduction"] is None
    assert row["left_out"] == "I/O: the mix's domains have no disk reads"
