"""`xpipe hash` against `xxhsum -H3` on the same guest-memory dump, whole processes.

Creates (once, in a cache folder) a raw pmemsave-style dump of realistic
content: 45% zero pages, 35% random pages, 20% copies of a pool of 512 pages
(the kind of mix a booted guest shows). Warms the page cache, then times
`xxhsum -H3 DUMP` (xxh3-64 of the whole file, one core: the raw hashing limit)
and `xpipe hash DUMP -o OUT.parquet` (xxh3-64 of every 4 KiB page, page types,
Parquet written) alternately, and reports xxhsum_time / xpipe_time (target
>= 1.0) and xpipe's peak resident memory (target < 512 MiB).

    scripts/install-bench-deps.sh       # apt-get install -y xxhash time; pip install -e '.[bench]'
    python benchmarks/bench_hash.py     # writes results/bench/hash.json
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from record import load_now, machine, write_result

PAGE = 4096
MIX = {"zero": 0.45, "random": 0.35, "repeated": 0.20}


def make_dump(path: Path, pages: int, seed: int) -> None:
    """Write ``pages`` pages of the MIX to ``path`` (atomically: temp file, then rename)."""
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, size=(512, PAGE), dtype=np.uint8)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        for start in range(0, pages, 16384):  # 64 MiB at a time
            n = min(16384, pages - start)
            kind = rng.choice(3, size=n, p=list(MIX.values()))
            buf = np.zeros((n, PAGE), dtype=np.uint8)
            r = np.flatnonzero(kind == 1)
            buf[r] = rng.integers(0, 256, size=(len(r), PAGE), dtype=np.uint8)
            s = np.flatnonzero(kind == 2)
            buf[s] = pool[rng.integers(0, len(pool), size=len(s))]
            f.write(buf.data)
    tmp.replace(path)


def warm(path: Path) -> None:
    """Read the file once so both tools hash from the page cache."""
    with path.open("rb", buffering=0) as f:
        buf = bytearray(64 << 20)
        while f.readinto(buf):
            pass


def timed(cmd: list[str], gnu_time: str) -> tuple[float, int]:
    """(wall seconds, peak RSS in bytes of the largest process) of ``cmd``.

    The RSS comes from GNU time (wait4's ru_maxrss of the command and of the
    workers it waited for): measured from this process, ru_maxrss would count
    this process's own memory, inherited by the child between fork and exec.
    """
    start = time.perf_counter()
    p = subprocess.run([gnu_time, "-f", "maxrss_kb=%M", *cmd], check=False, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - start
    if p.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr}")
    kb = int(p.stderr.rsplit("maxrss_kb=", 1)[1].split()[0])
    return wall, kb * 1024


def _tree_rss(pid: int) -> int:
    total = 0
    todo = [pid]
    while todo:
        q = todo.pop()
        try:
            with open(f"/proc/{q}/status") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
            with open(f"/proc/{q}/task/{q}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, StopIteration):
            pass
    return total


def tree_peak_rss(cmd: list[str], every_s: float = 0.002) -> int:
    """Peak over time of the summed RSS of ``cmd`` and its child processes, sampled
    (an upper bound: pages shared after fork count once per process)."""
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(p.pid))
            time.sleep(every_s)

    t = threading.Thread(target=sample)
    t.start()
    p.wait()
    done.set()
    t.join()
    return peak


def check_output(dump: Path, out: Path, pages: int) -> None:
    import polars as pl
    import xxhash

    df = pl.read_parquet(out, columns=["gfn", "hash"])
    if df.height != pages or df["gfn"][-1] != pages - 1:
        raise SystemExit(f"{out}: expected {pages} rows")
    with dump.open("rb") as f:
        head = f.read(1024 * PAGE)
    want = [xxhash.xxh3_64_intdigest(head[i * PAGE:(i + 1) * PAGE]) for i in range(1024)]
    if df["hash"][:1024].to_list() != want:
        raise SystemExit(f"{out}: hashes differ from xxhash's")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gib", type=float, default=4.0, help="dump size (default 4 GiB)")
    ap.add_argument("--reps", type=int, default=5, help="timed runs of each tool, alternating")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "xpipe-bench",
                    help="where the dump is created and kept for later runs")
    ap.add_argument("--out", type=Path, default=Path("results/bench/hash.json"))
    args = ap.parse_args()
    load_start = load_now()

    xxhsum = shutil.which("xxhsum")
    if xxhsum is None:
        raise SystemExit("xxhsum not found: apt-get install -y xxhash (or scripts/install-bench-deps.sh)")
    gnu_time = shutil.which("time")
    if gnu_time is None:
        raise SystemExit("GNU time not found: apt-get install -y time (or scripts/install-bench-deps.sh)")
    # The console script beside this interpreter: a `xpipe` found on PATH may be a
    # wrapper (pyenv's shims cost ~50 ms a start) that xxhsum does not pay.
    script = Path(sys.executable).with_name("xpipe")
    xpipe = [str(script)] if script.exists() else [sys.executable, "-m", "xpipe.cli"]

    pages = int(args.size_gib * (1 << 30)) // PAGE
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    dump = args.cache_dir / f"dump-{pages}p-s{args.seed}.raw"
    if not dump.exists() or dump.stat().st_size != pages * PAGE:
        print(f"creating {dump} ({pages * PAGE / 2**30:.1f} GiB)...", flush=True)
        make_dump(dump, pages, args.seed)
    out = args.cache_dir / "pages.parquet"
    cmds = {"xxhsum": [xxhsum, "-H3", str(dump)], "xpipe": xpipe + ["hash", str(dump), "-o", str(out)]}

    warm(dump)
    for cmd in cmds.values():  # untimed: page cache, Python bytecode and disk caches
        timed(cmd, gnu_time)
    check_output(dump, out, pages)
    wall = {k: [] for k in cmds}
    rss = {k: [] for k in cmds}
    for rep in range(args.reps):
        warm(dump)
        for name in (("xxhsum", "xpipe") if rep % 2 == 0 else ("xpipe", "xxhsum")):
            s, r = timed(cmds[name], gnu_time)
            wall[name].append(s)
            rss[name].append(r)
    tree_rss = tree_peak_rss(cmds["xpipe"])

    med = {k: statistics.median(v) for k, v in wall.items()}
    best = {k: min(v) for k, v in wall.items()}
    result = {
        "machine": machine(load_start),
        "dump": {"bytes": pages * PAGE, "pages": pages, "mix": MIX, "seed": args.seed},
        "wall_s": {k: [round(x, 3) for x in v] for k, v in wall.items()},
        "median_s": {k: round(v, 3) for k, v in med.items()},
        "best_s": {k: round(v, 3) for k, v in best.items()},
        "ratio_xxhsum_over_xpipe_median": round(med["xxhsum"] / med["xpipe"], 3),
        "ratio_xxhsum_over_xpipe_best": round(best["xxhsum"] / best["xpipe"], 3),
        "xpipe_gb_per_s_median": round(pages * PAGE / med["xpipe"] / 1e9, 2),
        "xxhsum_gb_per_s_median": round(pages * PAGE / med["xxhsum"] / 1e9, 2),
        "xpipe_peak_rss_mib_largest_process": round(max(rss["xpipe"]) / 2**20, 1),
        "xpipe_peak_rss_mib_process_tree_sampled": round(tree_rss / 2**20, 1),
    }
    print(f"dump: {pages * PAGE / 2**30:.1f} GiB, {pages:,} pages; {args.reps} runs each, alternating")
    print(f"{'':10}{'median s':>10}{'best s':>9}{'GB/s':>7}{'peak RSS MiB':>14}")
    for k in cmds:
        print(f"{k:10}{med[k]:>10.3f}{best[k]:>9.3f}{pages * PAGE / med[k] / 1e9:>7.2f}"
              f"{max(rss[k]) / 2**20:>14.1f}")
    print(f"ratio xxhsum/xpipe: median {result['ratio_xxhsum_over_xpipe_median']:.2f}, "
          f"best {result['ratio_xxhsum_over_xpipe_best']:.2f} (target >= 1.0)")
    print(f"xpipe peak RSS: largest process {result['xpipe_peak_rss_mib_largest_process']} MiB, "
          f"process tree (sampled) {result['xpipe_peak_rss_mib_process_tree_sampled']} MiB (target < 512)")
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
