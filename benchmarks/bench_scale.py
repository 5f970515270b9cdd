"""Scale: a SYNTHETIC matrix of N domains x 1 GiB x 8 snapshots through every policy.

For each N it runs the whole workflow once (one Snakemake invocation, 2 cores)
in its own working directory, with the replay split into partitions of about
--per-partition domains' worth of frames each (replay_partitions = N / that),
reads every job's peak memory from Snakemake's benchmark files, and fits how
wall time and peak memory grow with N (time ~ N^a: a = 1 is linear; per-job
memory should not grow, as each partition holds the same share).

    python benchmarks/bench_scale.py                 # N = 8 16 32 64 128 256 (~1 h on 2 cores)
    python benchmarks/bench_scale.py --domains 8 16  # a quicker look

Writes results/bench/scale.json (--out). Needs ~25 GB of disk at 256 domains
while it runs; each N's folder is removed once measured (--keep keeps them).
"""

from __future__ import annotations

import argparse
import csv
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from record import write_result

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS = ["sqlite", "web", "compress", "compile", "idle"]


def config(n: int, partitions: int) -> dict:
    per = [n // len(WORKLOADS) + (i < n % len(WORKLOADS)) for i in range(len(WORKLOADS))]
    ids = [f"{w}-{i + 1}" for w, k in zip(WORKLOADS, per) for i in range(k)]
    return {
        "captures": {"scale": {"synthetic": {
            "seed": 1, "memory_mib": 1024, "workloads": WORKLOADS, "domains_per_workload": per,
            "snapshot_times_s": [10 * (k + 1) for k in range(8)], "compress": False}}},
        "mixes": {"all": {"capture": "scale", "domains": ids}},
        # scan_start: snapshot is the scanner this benchmark always ran (from the first snapshot)
        "sweep": {"policies": ["none", "zero", "oracle", "scan", "dsa"], "area_mib": [256],
                  "eviction": ["lru"], "admit_zero": [True], "scan_pages_per_s": [10000],
                  "scan_start": ["snapshot"], "snapshot_every": [1], "host_mib": [65536]},
        "domains_per_host": False,
        "replay_partitions": partitions,
    }


#: Where Snakemake's benchmark files are: the shared capture stages', and the
#: experiment's own (the config in config/config.yaml is experiment "default").
BENCHMARK_DIRS = ("results/benchmarks", "results/default/benchmarks")


#: The most memory any job may take (the target: every job of a 256-domain matrix under it).
JOB_LIMIT_MIB = 4096


def run(n: int, partitions: int, work: Path, keep: bool) -> dict:
    shutil.rmtree(work, ignore_errors=True)
    (work / "config").mkdir(parents=True)
    (work / "config/config.yaml").write_text(yaml.safe_dump(config(n, partitions)))
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(work),
                    "--cores", "2", "--quiet", "rules"], check=True)
    wall = time.perf_counter() - started
    jobs = []
    for folder in BENCHMARK_DIRS:
        for tsv in (work / folder).rglob("*.tsv"):
            with tsv.open() as f:
                row = next(csv.DictReader(f, delimiter="\t"))
            jobs.append((str(tsv.relative_to(work / folder)), float(row["s"]), float(row["max_rss"])))
    rows = sum(1 for _ in (work / "results/pages/scale").glob("*.parquet")) * 8 * 262144
    peak = max(jobs, key=lambda j: j[2])
    replay = [j for j in jobs if j[0].startswith(("replay_", "split_pages"))]
    parts = [j for j in jobs if j[0].startswith(("replay_partition", "replay_mix"))]
    if keep:
        shutil.rmtree(work / "results/synthetic", ignore_errors=True)  # the bulk of the disk use
    else:
        shutil.rmtree(work)
    return {"domains": n, "partitions": partitions, "page_rows": rows, "wall_s": round(wall, 1), "jobs": len(jobs),
            "peak_job": peak[0], "peak_rss_mib": round(peak[2], 1),
            "peak_partition_rss_mib": round(max(j[2] for j in parts), 1),
            "every_job_under_limit": all(j[2] < JOB_LIMIT_MIB for j in jobs),
            "replay_s": round(sum(s for _, s, _ in replay), 1)}


def exponent(xs, ys) -> float:
    """Least-squares slope of log y against log x."""
    lx, ly = [math.log(x) for x in xs], [math.log(y) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sum((a - mx) ** 2 for a in lx)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domains", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    ap.add_argument("--per-partition", type=int, default=16,
                    help="domains' worth of frames per replay partition (default 16)")
    ap.add_argument("--keep", action="store_true", help="keep each N's working folder")
    ap.add_argument("--work", default=str(ROOT / "results/bench/scale"))
    ap.add_argument("--out", type=Path, default=ROOT / "results/bench/scale.json")
    args = ap.parse_args()
    results = []
    for n in args.domains:
        r = run(n, max(1, math.ceil(n / args.per_partition)), Path(args.work) / f"n{n}", args.keep)
        results.append(r)
        print(f"{n:>3} domains  {r['partitions']:>2} partitions  {r['page_rows']:>11,} page rows  "
              f"{r['wall_s']:>7.1f} s  replay {r['replay_s']:>7.1f} s  peak partition job "
              f"{r['peak_partition_rss_mib']:>7.1f} MiB  peak job {r['peak_rss_mib']:>7.1f} MiB ({r['peak_job']})"
              f"{'' if r['every_job_under_limit'] else f'  OVER {JOB_LIMIT_MIB} MiB'}", flush=True)
    out = {"runs": results}
    if len(results) > 1:
        ns = [r["domains"] for r in results]
        out["time_exponent"] = round(exponent(ns, [r["wall_s"] for r in results]), 2)
        out["memory_exponent"] = round(exponent(ns, [r["peak_rss_mib"] for r in results]), 2)
        out["partition_memory_exponent"] = round(exponent(ns, [r["peak_partition_rss_mib"] for r in results]), 2)
        print(f"time ~ N^{out['time_exponent']}, peak job memory ~ N^{out['memory_exponent']}, "
              f"peak partition job memory ~ N^{out['partition_memory_exponent']}")
    write_result(args.out, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
