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

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpipe.bundle import PAGE_SIZE, write_manifest, write_u64
from xpipe.errors import InputError
from xpipe.hashing import PAGES_PER_MIB, ZERO_HASH
from xpipe.pagetypes import KPF

#: The one disk every synthetic domain reads, by its name under `disks` in the manifest.
DISK = "image"
_LRU = 1 << 5
_F = {k: np.uint64(1 << v) for k, v in KPF.items()}


class SpecError(InputError):
    """A SyntheticSpec field that cannot make a bundle xpipe reads: ``field`` names it.

    An InputError, so the workflow and the CLI report it on one line; a caller
    that knows where the value came from (a config key, an option) may say so
    with ``field`` and ``expected``.
    """

    def __init__(self, field: str, expected: str):
        super().__init__("SyntheticSpec", field, expected)
        self.field = field


#: Names of disk regions of the generator's model (xpipe.synthetic._disk_layout), not workloads.
_REGIONS = ("boot", "code")
#: Blocks of its own region each workload needs: its reads are runs of 16 blocks.
_MIN_WORKLOAD_BLOCKS = 16
_WORKLOAD = re.compile(r"[A-Za-z0-9_.-]+")  # a domain id is WORKLOAD-N (xpipe.readers.manifest)


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _disk_fits(disk_mib: int, workloads: int) -> bool:
    """Whether each workload gets its _MIN_WORKLOAD_BLOCKS of the disk (layout of _disk_layout)."""
    blocks = disk_mib * PAGES_PER_MIB
    return (blocks - blocks // 4) // workloads >= _MIN_WORKLOAD_BLOCKS


@dataclass(frozen=True)
class SyntheticSpec:
    """What the generator writes; every field is checked when the spec is made (SpecError)."""

    workloads: tuple[str, ...] = ("sqlite", "web", "compress", "compile", "idle")
    domains_per_workload: tuple[int, ...] = (2, 2, 1, 1, 1)
    memory_mib: int = 64
    snapshot_times_s: tuple[float, ...] = (10.0, 20.0, 30.0, 40.0)
    disk_mib: int = 256
    seed: int = 1
    compress: bool = True  # gzip the compact files (small bundles); off for scale runs

    def __post_init__(self) -> None:
        for name in ("memory_mib", "disk_mib"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise SpecError(name, f"expected a whole number of MiB, 1 or more; got {v!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise SpecError("seed", f"expected a whole number, 0 or more; got {self.seed!r}")
        if not isinstance(self.compress, (bool, np.bool_)):
            raise SpecError("compress", f"expected true or false; got {self.compress!r}")
        ws, ns, ts = self.workloads, self.domains_per_workload, self.snapshot_times_s
        if not isinstance(ws, (tuple, list)) or not ws:
            raise SpecError("workloads", f"expected a tuple of one or more workload names; got {ws!r}")
        for w in ws:
            if not isinstance(w, str) or not _WORKLOAD.fullmatch(w) or w in _REGIONS:
                raise SpecError("workloads", f"expected names of letters, digits, _.- other than "
                                             f"{' and '.join(_REGIONS)}; got {w!r}")
        if len(set(ws)) != len(ws):
            raise SpecError("workloads", f"expected distinct names; got {ws!r}")
        # one count per workload: checked where the two are paired (check_pairs), so that a
        # config reader constructing a spec can name its own key for a mismatch
        if not isinstance(ns, (tuple, list)) or not all(_is_int(n) and n >= 0 for n in ns) or sum(ns) < 1:
            raise SpecError("domains_per_workload",
                            f"expected counts of 0 or more, one domain at least in all; got {ns!r}")
        if not isinstance(ts, (tuple, list)) or not ts or not all(
                isinstance(t, (int, float, np.integer, np.floating)) and not isinstance(t, (bool, np.bool_))
                and math.isfinite(t) and t > 0 for t in ts):
            raise SpecError("snapshot_times_s", f"expected one or more finite times above 0 s; got {ts!r}")
        if list(ts) != sorted(set(ts)):
            raise SpecError("snapshot_times_s", f"expected strictly increasing times; got {ts!r}")
        if not _disk_fits(self.disk_mib, len(ws)):
            need = max(1, len(ws) * _MIN_WORKLOAD_BLOCKS * 4 // 3 // PAGES_PER_MIB)
            while not _disk_fits(need, len(ws)):
                need += 1
            raise SpecError("disk_mib", f"expected a disk of at least {need} MiB for {len(ws)} workloads; "
                                        f"got {self.disk_mib}")


def check_pairs(spec: SyntheticSpec) -> None:
    """SpecError unless ``spec`` has one domain count per workload."""
    if len(spec.domains_per_workload) != len(spec.workloads):
        raise SpecError("domains_per_workload", f"expected one count per workload ({len(spec.workloads)}); "
                                                f"got {tuple(spec.domains_per_workload)!r}")


def domain_ids(spec: SyntheticSpec) -> list[str]:
    """The ids of the domains ``write_synthetic_bundle(spec)`` writes, in order."""
    check_pairs(spec)
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
    check_pairs(spec)  # every other field was checked when the spec was made
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
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


def write_synthetic_fiu_bundle(out: str | Path, seed: int = 1, requests: int = 20_000) -> Path:
    """A SYNTHETIC bundle in the FIU I/O-dedup trace format (xpipe.readers.fiu): one
    trace file of two devices, a domain each; MD5 contents, a shared base of blocks
    both devices hold (the same software), zero blocks the most frequent content,
    reads skewed towards popular blocks, and writes that change a block's content."""
    import gzip
    import hashlib

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    devices = {"8:0": ("httpd", "php"), "8:16": ("dovecot", "postfix")}
    blocks = 4096  # per device
    # content ids: shared base (0..), zero (-1), each device's own (device-tagged)
    contents = {}
    for d in devices:
        c = rng.integers(0, 1500, blocks).astype(object)  # shared base
        own = rng.random(blocks) < 0.5
        c[own] = [f"{d}/{i}" for i in np.flatnonzero(own)]
        c[rng.random(blocks) < 0.25] = "zero"
        contents[d] = c
    popularity = 1.0 / np.arange(1, blocks + 1) ** 0.9
    popularity /= popularity.sum()
    digest = {}
    lines = []
    t = 89_968_195_792_462  # ns, the FIU web-vm sample line's clock
    for k in range(requests):
        t += int(rng.exponential(2_000_000))
        d = list(devices)[rng.integers(0, len(devices))]
        b = int(rng.choice(blocks, p=popularity))
        if rng.random() < 0.15:  # a write: the block holds new content from now on
            contents[d][b] = f"{d}/w{k}"
            op = "W"
        else:
            op = "R"
        cid = str(contents[d][b])
        if cid not in digest:
            digest[cid] = hashlib.md5(b"\0" * PAGE_SIZE if cid == "zero" else cid.encode()).hexdigest()
        major, minor = d.split(":")
        proc = devices[d][rng.integers(0, 2)]
        lines.append(f"{t} {1000 + rng.integers(0, 50)} {proc} {b * 8} 8 {op} {major} {minor} {digest[cid]}\n")
    trace = out / "trace.txt.gz"
    with gzip.GzipFile(trace, "wb", mtime=0) as f:  # mtime 0: the same bytes at every run
        f.write("".join(lines).encode())
    return write_manifest(
        out, synthetic=True, hash_kind="md5", disks={},
        description=f"SYNTHETIC FIU-format I/O trace (seed {seed}, {requests} requests, two devices); "
                    "real FIU traces (SNIA IOTTA) read the same way",
        domains=[{"id": f"dev-{d.replace(':', '-')}", "workload": procs[0], "reads": {"fiu": trace.name, "device": d}}
                 for d, procs in devices.items()],
    )


def write_synthetic_umass_bundle(out: str | Path, seed: int = 1, machines: int = 3, memory_mib: int = 64,
                                 snapshots: int = 4) -> Path:
    """A SYNTHETIC bundle in the UMass memory-trace format (xpipe.readers.umass): memory-only
    domains, one trace file per machine and snapshot (every 30 minutes, as in the trace set),
    each an ASCII header then one 32-bit hash per page. Pages are zero (about a third), from
    a base the machines share (the same OS and programs), or the machine's own; about 15% of
    the non-zero pages change between snapshots."""
    import xxhash

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pages = memory_mib * PAGES_PER_MIB

    def h32(cid: str) -> int:  # the zero page hashes 4 KiB of zeros, the others their id
        return xxhash.xxh32_intdigest(b"\0" * PAGE_SIZE if cid == "zero" else cid.encode())

    domains = []
    for m in range(machines):
        did = f"server-{m + 1}"
        content = rng.integers(0, pages // 2, pages).astype(object)  # the shared base
        own = rng.random(pages) < 0.3
        content[own] = [f"{did}/{i}" for i in np.flatnonzero(own)]
        content[rng.random(pages) < 0.35] = "zero"
        entries = []
        for k in range(snapshots):
            if k:
                change = (rng.random(pages) < 0.15) & (content != "zero")
                content[change] = [f"{did}/s{k}/{i}" for i in np.flatnonzero(change)]
            hashes = np.array([h32(str(c)) for c in content], dtype="<u4")
            header = (f"OS: Linux 2.6.18 x86 (SYNTHETIC, seed {seed})\n"
                      f"processes: init syslogd sshd httpd mysqld crond\n").encode("ascii")
            name = f"{did}/mem-{k:02d}.dat"
            (out / did).mkdir(exist_ok=True)
            (out / name).write_bytes(header + hashes.tobytes())
            entries.append({"time_s": 1800.0 * (k + 1), "umass": name})
        domains.append({"id": did, "workload": "server", "memory_mib": memory_mib, "snapshots": entries})
    return write_manifest(
        out, synthetic=True, hash_kind="32-bit", disks={},
        description=f"SYNTHETIC UMass-format memory traces (seed {seed}, {machines} machines x {snapshots} "
                    f"snapshots, {memory_mib} MiB); real Memory Buddies traces read the same way",
        domains=domains,
    )
