"""A seeded generator of SYNTHETIC capture bundles, for tests and scale runs.

Nothing here was recorded from a machine: the bundle's manifest says
``synthetic: true`` and every table and figure made from it carries that label.
The generator writes the same files a real capture writes (page-hash and
kpageflags files, a QEMU-format read trace, disk block hashes), so the whole
pipeline runs on it unchanged.

Model, per domain: a kernel region (text identical across domains, data
private), slab and page tables, anonymous memory that grows and is partly
rewritten each interval, and a page cache filled by the disk reads the
domain issues: boot files common to all domains, files of its workload common
to domains of that workload, and a private tail. A block in a domain's page
cache is not read again (traces hold page-cache misses only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpipe.bundle import PAGE_SIZE, write_manifest, write_u64
from xpipe.hashing import PAGES_PER_MIB, ZERO_HASH
from xpipe.pagetypes import KPF

#: The one disk every synthetic domain reads, by its name under `disks` in the manifest.
DISK = "image"
_LRU = 1 << 5
_F = {k: np.uint64(1 << v) for k, v in KPF.items()}


@dataclass(frozen=True)
class SyntheticSpec:
    workloads: tuple[str, ...] = ("sqlite", "web", "compress", "compile", "idle")
    domains_per_workload: tuple[int, ...] = (2, 2, 1, 1, 1)
    memory_mib: int = 64
    snapshot_times_s: tuple[float, ...] = (10.0, 20.0, 30.0, 40.0)
    disk_mib: int = 256
    seed: int = 1
    compress: bool = True  # gzip the compact files (small bundles); off for scale runs


def domain_ids(spec: SyntheticSpec) -> list[str]:
    """The ids of the domains ``write_synthetic_bundle(spec)`` writes, in order."""
    return [f"{w}-{i + 1}" for w, n in zip(spec.workloads, spec.domains_per_workload) for i in range(n)]


def _disk_layout(rng: np.random.Generator, blocks: int, workloads) -> tuple[np.ndarray, dict]:
    """Block hashes of one disk image and the block ranges each kind of file occupies."""
    h = rng.integers(1, 2**63, size=blocks, dtype=np.uint64)
    h[rng.random(blocks) < 0.03] = ZERO_HASH  # sparse file tails
    dup = rng.random(blocks) < 0.02  # files holding identical blocks
    h[dup] = h[rng.integers(0, blocks, dup.sum())]
    ranges = {"boot": (0, blocks // 16), "code": (0, blocks // 4)}
    per = (blocks - blocks // 4) // max(len(workloads), 1)
    for i, w in enumerate(workloads):
        start = blocks // 4 + i * per
        ranges[w] = (start, start + per)
    return h, ranges


def _reads_for(rng, ranges, workload, interval, count):
    """Block numbers a domain reads in one interval (before page-cache filtering)."""
    if interval == 0:
        lo, hi = ranges["boot"]
        base = np.arange(lo, hi)  # every domain boots from the same files
    else:
        base = np.zeros(0, dtype=np.int64)
    lo, hi = ranges.get(workload, ranges["boot"])
    # workload files: runs of up to 32 blocks at offsets shared by the workload
    starts = lo + (np.arange(count // 16) * 7919) % max(hi - lo - 32, 1)
    work = (starts[:, None] + np.arange(16)[None, :]).ravel()
    private = rng.integers(ranges["code"][1], hi if hi > ranges["code"][1] else ranges["code"][1] + 1,
                           count // 4)
    return np.concatenate([base, work, private]).astype(np.int64)


def _domain(rng, disk, ranges, workload, frames, times, shared_kernel):
    """Snapshots (hashes, flags) and read blocks with times for one domain."""
    hashes = np.full(frames, ZERO_HASH, dtype=np.uint64)
    flags = np.full(frames, _F["BUDDY"], dtype=np.uint64)
    nk = frames // 25
    hashes[:nk] = shared_kernel[:nk]
    hashes[nk // 2:nk] = rng.integers(1, 2**63, nk - nk // 2, dtype=np.uint64)  # kernel data
    flags[:nk] = _F["RESERVED"]
    free = list(range(frames - 1, nk - 1, -1))  # a stack of free frames

    def take(n):
        got = [free.pop() for _ in range(min(n, len(free)))]
        return np.array(got, dtype=np.int64)

    for kind, share in (("SLAB", 0.03), ("PGTABLE", 0.01)):
        f = take(int(frames * share))
        hashes[f], flags[f] = rng.integers(1, 2**63, len(f), dtype=np.uint64), _F[kind]
    anon = take(int(frames * 0.08))
    hashes[anon], flags[anon] = rng.integers(1, 2**63, len(anon), dtype=np.uint64), _F["ANON"]
    cached: set[int] = set()
    snaps, read_blocks, read_times = [], [], []
    prev_t = 0.0
    budget = {"idle": 200}.get(workload, frames // 10)
    for k, t in enumerate(times):
        want = _reads_for(rng, ranges, workload, k, budget)
        new = [b for b in dict.fromkeys(want.tolist()) if b not in cached]
        slots = take(len(new))
        new = new[: len(slots)]
        cached.update(new)
        blocks = np.array(new, dtype=np.int64)
        hashes[slots] = disk[blocks]
        code = blocks < ranges["code"][1]
        flags[slots] = np.where(code, _F["MMAP"], np.uint64(0)) | np.uint64(_LRU)
        read_blocks.append(blocks)
        read_times.append(np.sort(rng.uniform(prev_t, t, len(blocks))))
        # anonymous memory: a fifth rewritten, some grown (a tenth of it calloc'ed zeros)
        rewrite = anon[rng.random(len(anon)) < 0.2]
        hashes[rewrite] = rng.integers(1, 2**63, len(rewrite), dtype=np.uint64)
        grown = take(frames // 50 if workload != "idle" else 0)
        hashes[grown] = np.where(rng.random(len(grown)) < 0.1, ZERO_HASH,
                                 rng.integers(1, 2**63, len(grown), dtype=np.uint64))
        flags[grown] = _F["ANON"]
        anon = np.concatenate([anon, grown])
        snaps.append((hashes.copy(), flags.copy()))
        prev_t = t
    return snaps, np.concatenate(read_blocks), np.concatenate(read_times)


def _trace_lines(blocks: np.ndarray, times: np.ndarray, epoch: float) -> str:
    """QEMU log-backend lines, merging runs of consecutive blocks into one request."""
    lines = []
    i = 0
    while i < len(blocks):
        j = i + 1
        while j < len(blocks) and j - i < 32 and blocks[j] == blocks[j - 1] + 1:
            j += 1
        t = epoch + times[i]
        sec, usec = int(t), int(round((t - int(t)) * 1e6))
        if usec == 1_000_000:
            sec, usec = sec + 1, 0
        lines.append(f"4242@{sec}.{usec:06d}:blk_co_preadv blk 0x5581a0c0 bs 0x5581b1c0 "
                     f"offset {int(blocks[i]) * PAGE_SIZE} bytes {(j - i) * PAGE_SIZE} flags 0x0\n")
        i = j
    return "".join(lines)


def write_synthetic_bundle(out: str | Path, spec: SyntheticSpec = SyntheticSpec()) -> Path:
    """Write a synthetic capture bundle to ``out``; returns the manifest path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if len(spec.workloads) != len(spec.domains_per_workload):
        raise ValueError("workloads and domains_per_workload must have the same length")
    rng = np.random.default_rng(spec.seed)
    disk, ranges = _disk_layout(rng, spec.disk_mib * PAGES_PER_MIB, spec.workloads)
    gz = ".gz" if spec.compress else ""
    write_u64(out / f"disk.blk.xxh{gz}", disk)
    frames = spec.memory_mib * PAGES_PER_MIB
    shared_kernel = rng.integers(1, 2**63, frames, dtype=np.uint64)
    epoch = 1_790_000_000.0
    domains = []
    for w, n in zip(spec.workloads, spec.domains_per_workload):
        for i in range(n):
            did = f"{w}-{i + 1}"
            (out / did).mkdir(exist_ok=True)
            snaps, blocks, times = _domain(rng, disk, ranges, w, frames, spec.snapshot_times_s, shared_kernel)
            (out / did / "reads.log").write_text(_trace_lines(blocks, times, epoch))
            entries = []
            for k, (h, f) in enumerate(snaps):
                write_u64(out / did / f"s{k}.xxh{gz}", h)
                write_u64(out / did / f"s{k}.kpf{gz}", f)
                entries.append({"time_s": spec.snapshot_times_s[k], "pages": f"{did}/s{k}.xxh{gz}",
                                "kpageflags": f"{did}/s{k}.kpf{gz}"})
            domains.append({"id": did, "workload": w, "memory_mib": spec.memory_mib, "disk": DISK,
                            "reads": f"{did}/reads.log", "reads_start_epoch_s": epoch,
                            "snapshots": entries})
    return write_manifest(
        out,
        synthetic=True,
        description=f"SYNTHETIC data from xpipe.synthetic (seed {spec.seed}); not recorded from any machine",
        disks={DISK: {"block_hashes": f"disk.blk.xxh{gz}", "size_bytes": len(disk) * PAGE_SIZE}},
        domains=domains,
    )
