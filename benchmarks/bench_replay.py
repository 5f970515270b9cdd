"""Replay speed against libCacheSim's LRU, with exactly the same hits.

Generates Zipf-distributed disk reads (seeded), replays them through xpipe's
`dsa` policy with LRU eviction end to end (`xpipe.sim.replay.replay` over two
DomainTrace objects with a tiny memory snapshot, so the hash -> dense id
mapping and the per-step work are timed too), and runs libCacheSim's LRU on the
same stream from its binary oracleGeneral trace with the same capacity in
objects (every object has size 1). Asserts equal hit counts and reports
requests/s for both. Then reports `scan` and `oracle` throughput in pages per
second on a synthetic memory mix.

    scripts/install-bench-deps.sh            # pip install -e '.[bench]' (libcachesim)
    python benchmarks/bench_replay.py        # writes results/bench/replay.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from record import load_now, machine, write_result

from xpipe.hashing import PAGES_PER_MIB, ZERO_HASH
from xpipe.pagetypes import PAGE_TYPES
from xpipe.sim.replay import DomainTrace, replay
from xpipe.sim.runs import RunSpec

#: libCacheSim's oracleGeneral record: timestamp, obj_id, obj_size, next_access_vtime.
ORACLE_GENERAL = np.dtype([("ts", "<u4"), ("obj", "<u8"), ("size", "<u4"), ("next", "<i8")])
assert ORACLE_GENERAL.itemsize == 24


def zipf_reads(n: int, objects: int, alpha: float, seed: int) -> np.ndarray:
    """``n`` reads of ``objects`` contents, Zipf(alpha) popularity; each content is a random 64-bit hash."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(1.0 / np.arange(1, objects + 1) ** alpha)
    rank = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
    ids = np.unique(rng.integers(1, 2**63, size=objects + objects // 8, dtype=np.uint64))
    ids = ids[ids != ZERO_HASH]
    ids = rng.permutation(ids)[:objects]  # popularity independent of hash order
    return ids[np.minimum(rank, objects - 1)]


def write_oracle_general(path: Path, obj: np.ndarray) -> None:
    """The reads as an oracleGeneral trace: size 1 each, next access by position (-1: none)."""
    rec = np.empty(len(obj), dtype=ORACLE_GENERAL)
    rec["ts"] = np.arange(len(obj)) // 1000  # seconds; 1000 reads a second
    rec["obj"] = obj
    rec["size"] = 1
    order = np.argsort(obj, kind="stable")
    nxt = np.full(len(obj), -1, dtype=np.int64)
    same = obj[order[1:]] == obj[order[:-1]]
    nxt[order[:-1][same]] = order[1:][same]
    rec["next"] = nxt
    rec.tofile(path)


def xpipe_dsa_lru(reads: np.ndarray, capacity: int, snapshots: int) -> tuple[int, float]:
    """(reads avoided, seconds) of replay() with dsa-lru over two domains sharing the read stream."""
    # Two domains take alternate reads; times are the read's position, so the
    # merged replay order is the stream's order. Snapshots split it into steps.
    n = len(reads)
    t = np.arange(n, dtype=np.float64) + 1.0
    snap_times = np.linspace(0.0, float(n), snapshots)
    frames = np.zeros(4, dtype=np.uint64), np.full(4, PAGE_TYPES.index("unknown"), dtype=np.uint8)
    domains = [
        DomainTrace(id=f"d{i}", times=snap_times, load=lambda k: frames, frames=4,
                    read_times=t[i::2], read_hashes=reads[i::2])
        for i in range(2)
    ]
    # the area in MiB, exactly ``capacity`` pages (objects): the policy takes MiB now
    spec = RunSpec.make("dsa", eviction="lru", area_mib=capacity / PAGES_PER_MIB, admit_zero=False)
    start = time.perf_counter()
    out = replay(domains, spec)
    seconds = time.perf_counter() - start
    return int(out.timeline["reads_avoided"].sum()), seconds


def libcachesim_lru(trace: Path, n: int, capacity: int) -> tuple[int, float]:
    """(hits, seconds) of libCacheSim's LRU over the oracleGeneral trace, capacity in objects."""
    import libcachesim as lcs

    start = time.perf_counter()
    reader = lcs.TraceReader(str(trace), lcs.TraceType.ORACLE_GENERAL_TRACE)
    cache = lcs.LRU(cache_size=capacity)
    miss_ratio, _byte_miss_ratio = cache.process_trace(reader)
    seconds = time.perf_counter() - start
    return n - round(miss_ratio * n), seconds


def memory_mix(domains: int, frames: int, snapshots: int, seed: int) -> list[DomainTrace]:
    """Synthetic domains: zero pages, a shared pool (kernel, libraries), private pages that change."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(1, 2**63, size=frames // 4, dtype=np.uint64)
    file_t = PAGE_TYPES.index("file_data")
    out = []
    for d in range(domains):
        kind = rng.choice(3, size=frames, p=[0.4, 0.3, 0.3])
        base = np.where(kind == 0, ZERO_HASH, pool[rng.integers(0, len(pool), frames)])
        base[kind == 2] = rng.integers(1, 2**63, size=int((kind == 2).sum()), dtype=np.uint64)
        types = np.where(kind == 1, file_t, PAGE_TYPES.index("anonymous")).astype(np.uint8)
        snaps = []
        for _ in range(snapshots):  # 5% of frames are rewritten between snapshots
            h = base.copy()
            w = rng.random(frames) < 0.05
            h[w] = rng.integers(1, 2**63, size=int(w.sum()), dtype=np.uint64)
            snaps.append((h, types))
            base = h
        out.append(DomainTrace(id=f"m{d}", times=np.arange(snapshots) * 30.0,
                               load=lambda k, s=snaps: s[k], frames=frames))
    return out


def time_policy(mix: list[DomainTrace], spec: RunSpec, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        replay(mix, spec)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reads", type=int, default=10_000_000, help="disk reads in the stream")
    ap.add_argument("--objects", type=int, default=1_000_000, help="distinct contents read")
    ap.add_argument("--alpha", type=float, default=1.0, help="Zipf exponent")
    ap.add_argument("--capacity", type=int, default=100_000, help="cache / sharing area size, objects")
    ap.add_argument("--snapshots", type=int, default=10, help="replay steps the reads are split into")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of each timing (alternating)")
    ap.add_argument("--mem", default="8x65536x8", help="memory mix: domains x frames x snapshots")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "xpipe-bench",
                    help="where the oracleGeneral trace is written")
    ap.add_argument("--out", type=Path, default=Path("results/bench/replay.json"))
    args = ap.parse_args()
    load_start = load_now()

    reads = zipf_reads(args.reads, args.objects, args.alpha, args.seed)
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    trace = args.cache_dir / f"zipf-{args.reads}-{args.objects}-{args.alpha}-{args.seed}.oracleGeneral.bin"
    write_oracle_general(trace, reads)

    xpipe_dsa_lru(reads[:10_000], args.capacity, args.snapshots)  # compile / load numba code
    x_times, l_times = [], []
    for _ in range(args.reps):
        x_hits, x_s = xpipe_dsa_lru(reads, args.capacity, args.snapshots)
        l_hits, l_s = libcachesim_lru(trace, len(reads), args.capacity)
        if x_hits != l_hits:
            raise SystemExit(f"hit counts differ: xpipe {x_hits}, libCacheSim {l_hits}")
        x_times.append(x_s)
        l_times.append(l_s)
    x_rate, l_rate = len(reads) / min(x_times), len(reads) / min(l_times)
    # the median over repetitions: one lucky repetition does not make the ratio
    median_ratio = statistics.median(l_times) / statistics.median(x_times)

    d, f, s = (int(v) for v in args.mem.split("x"))
    mix = memory_mix(d, f, s, args.seed)
    pages = d * f * s
    policies = {}
    # the runs formerly named oracle, scan-r10000 (the scanner started at the first
    # snapshot) and dsa-lru-a65536-z (65,536 pages = 256 MiB)
    for run in ("oracle", "scan-r10000-snapshot", "dsa-lru-256mib-z"):
        spec = RunSpec.parse(run)
        replay(mix, spec)  # warm
        secs = time_policy(mix, spec, args.reps)
        policies[run] = {"seconds": round(secs, 4), "pages_per_s": round(pages / secs)}

    result = {
        "machine": machine(load_start),
        "stream": {"reads": len(reads), "objects": args.objects, "alpha": args.alpha,
                   "capacity_objects": args.capacity, "snapshots": args.snapshots, "seed": args.seed},
        "hits": x_hits,
        "hit_ratio": round(x_hits / len(reads), 6),
        "xpipe_dsa_lru": {"seconds": [round(v, 4) for v in x_times], "requests_per_s": round(x_rate)},
        "libcachesim_lru": {"seconds": [round(v, 4) for v in l_times], "requests_per_s": round(l_rate)},
        "ratio_xpipe_over_libcachesim": round(x_rate / l_rate, 3),
        "ratio_median_xpipe_over_libcachesim": round(median_ratio, 3),
        "memory_mix": {"domains": d, "frames": f, "snapshots": s, "pages": pages, "policies": policies},
    }
    print(f"{'':28}{'requests/s':>14}{'best s':>9}{'median s':>10}")
    for name, ts in (("xpipe replay dsa-lru", x_times), ("libCacheSim LRU", l_times)):
        print(f"{name:28}{len(reads) / min(ts):>14,.0f}{min(ts):>9.3f}{statistics.median(ts):>10.3f}")
    print(f"hits (both): {x_hits:,} of {len(reads):,}; ratio xpipe/libCacheSim = {median_ratio:.2f} median, "
          f"{x_rate / l_rate:.2f} best")
    print(f"memory mix {d} domains x {f} frames x {s} snapshots = {pages:,} pages:")
    for run, r in policies.items():
        print(f"  {run:<22}{r['pages_per_s']:>14,} pages/s")
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
