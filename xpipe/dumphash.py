"""`xpipe hash`: one guest memory dump (QMP pmemsave or dump-guest-memory ELF
core) into a PAGES table, one row per page frame.

The dump is memory-mapped and hashed in chunks; after each chunk its pages are
dropped from this process's mapping (they stay in the page cache), so memory
stays bounded whatever the dump's size. xxhash holds the GIL while it hashes,
so threads would not use a second core: forked workers take chunks from a
shared queue and write hashes into a shared array. The parent first imports
polars (the slowest import, a fifth of a 4 GiB run), then takes chunks too.
See docs/benchmarks.md for the figures.
"""

from __future__ import annotations

import mmap
import os
import struct
import traceback
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpipe.errors import InputError
from xpipe.hashing import PAGE_SIZE, hash_pages
from xpipe.readers.memdump import elf_load_segments

KINDS = ("auto", "pmemsave", "elf")
#: Pages hashed between two madvise(DONTNEED) calls: 32 MiB of mapping per process.
CHUNK_PAGES = 8192
#: Most chunks in the work queue: their numbers must fit a pipe's 64 KiB buffer.
MAX_CHUNKS = 16384
#: Below this many pages (128 MiB) forking costs more than a second core saves.
MIN_PARALLEL_PAGES = 4 * CHUNK_PAGES


@dataclass(frozen=True)
class Run:
    """``pages`` consecutive pages at byte ``offset`` of the dump, guest frames from ``gfn``."""

    offset: int
    gfn: int
    pages: int


def hash_dump(dump: str | Path, output: str | Path, kind: str = "auto",
              kpageflags: str | Path | None = None, workers: int = 0) -> int:
    """Write the PAGES table of ``dump`` to ``output`` (Parquet); returns its row count.

    domain is the dump's file stem, snapshot 0 at time 0. Page types come from
    ``kpageflags`` (the guest's /proc/kpageflags, one u64 per frame) when given,
    else only zero pages are told apart. ``workers``: hashing processes, 0 for one per core.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    path = Path(dump)
    if not path.is_file():
        raise InputError(path, None, "expected a guest memory dump; no such file")
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise InputError(path, "offset 0", "expected guest memory, found an empty file")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            _advise_huge(m)
            runs = _runs(path, m, kind)
            n = sum(r.pages for r in runs)
            procs = workers if workers > 0 else len(os.sched_getaffinity(0))
            procs = min(procs, max(1, n // CHUNK_PAGES)) if n >= MIN_PARALLEL_PAGES else 1
            hashes, table_of = _hash_runs(m, runs, n, procs, prepare=_table_builder)
    gfn = np.concatenate([np.arange(r.gfn, r.gfn + r.pages, dtype=np.int64) for r in runs])
    if len(runs) > 1:  # ELF segments need not come in address order
        order = np.argsort(gfn, kind="stable")
        gfn, hashes = gfn[order], hashes[order]
        if (np.diff(gfn) == 0).any():
            raise InputError(path, None, "expected PT_LOAD segments at distinct guest-physical addresses")
    table = table_of(path.stem, gfn, hashes, kpageflags)
    from xpipe.io import write_parquet

    write_parquet(table, output)
    return table.height


def _advise_huge(m: mmap.mmap) -> None:
    """Map the page cache's 2 MiB folios whole where the kernel can: mapping and
    unmapping 4 GiB then costs about a third of the 4 KiB page-table work."""
    try:
        m.madvise(mmap.MADV_HUGEPAGE)
    except (AttributeError, OSError):  # not Linux, or no transparent huge pages
        pass


def _runs(path: Path, m: mmap.mmap, kind: str) -> list[Run]:
    """Where the dump's pages are: the whole file (pmemsave) or each PT_LOAD segment (ELF)."""
    if kind == "elf" or (kind == "auto" and m[:4] == b"\x7fELF"):
        return [Run(off, paddr // PAGE_SIZE, size // PAGE_SIZE)
                for off, paddr, size in elf_load_segments(path, m)]
    if len(m) % PAGE_SIZE:
        raise InputError(path, f"offset {len(m) - len(m) % PAGE_SIZE}",
                         f"expected a whole number of {PAGE_SIZE}-byte pages (pmemsave of guest RAM)")
    return [Run(0, 0, len(m) // PAGE_SIZE)]


def _hash_runs(m: mmap.mmap, runs: list[Run], n: int, procs: int, prepare: Callable[[], object]):
    """(hashes in run order, prepare()). With procs > 1, procs - 1 forked workers
    start hashing at once; this process runs ``prepare`` first, then joins them."""
    chunks = _chunks(runs, max(CHUNK_PAGES, -(-n // MAX_CHUNKS)))
    if procs == 1 or len(chunks) > MAX_CHUNKS:  # (only an ELF core of many tiny segments has more)
        out = np.empty(n, dtype=np.uint64)
        _hash_chunks(m, chunks, range(len(chunks)), out)
        return out, prepare()
    shared = mmap.mmap(-1, n * 8)  # anonymous MAP_SHARED: every process writes its hashes here
    out = np.frombuffer(shared, dtype=np.uint64, count=n)
    # Work queue: chunk numbers in a pipe. A read of 4 bytes (< PIPE_BUF) is
    # atomic, so each chunk goes to exactly one process, whichever is free.
    r, w = os.pipe()
    os.write(w, struct.pack(f"<{len(chunks)}I", *range(len(chunks))))
    os.close(w)
    try:
        pids = [_fork(lambda: _hash_chunks(m, chunks, _take(r), out)) for _ in range(procs - 1)]
        try:
            ready = prepare()
            _hash_chunks(m, chunks, _take(r), out)
        finally:
            failed = [pid for pid in pids if os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0]
    finally:
        os.close(r)
    if failed:
        raise RuntimeError(f"{len(failed)} hashing worker(s) failed; see their traceback above")
    return out.copy(), ready  # the shared mapping goes with the last reference to it


def _chunks(runs: list[Run], size: int) -> list[tuple[int, int, int]]:
    """(file offset, pages, index in the result) of each piece of at most ``size`` pages."""
    pieces, at = [], 0
    for r in runs:
        for c in range(0, r.pages, size):
            pieces.append((r.offset + c * PAGE_SIZE, min(size, r.pages - c), at + c))
        at += r.pages
    return pieces


def _take(fd: int) -> Iterator[tuple[int, int, int]]:
    """Chunk numbers from the queue until it is empty."""
    while word := os.read(fd, 4):
        yield struct.unpack("<I", word)[0]


def _hash_chunks(m: mmap.mmap, chunks: list[tuple[int, int, int]], todo: Iterable[int],
                 out: np.ndarray) -> None:
    """Hash chunks number ``todo`` of ``m`` into ``out``."""
    with memoryview(m) as view:
        for c in todo:
            offset, pages, at = chunks[c]
            out[at : at + pages] = hash_pages(view[offset : offset + pages * PAGE_SIZE])
            # Unmap what was hashed so resident memory stays at one chunk;
            # madvise wants a page-aligned start (ELF offsets need not be).
            aligned = offset - offset % mmap.PAGESIZE
            m.madvise(mmap.MADV_DONTNEED, aligned, offset + pages * PAGE_SIZE - aligned)


def _fork(task: Callable[[], None]) -> int:
    """Run ``task`` in a forked child; returns its pid. The child exits 0 on success."""
    with warnings.catch_warnings():
        # Python >= 3.12 warns on fork when threads exist (e.g. polars' pool in a
        # test process); the child only hashes a read-only mapping and exits.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        task()
        code = 0
    except KeyboardInterrupt:  # the parent reports the interrupt
        pass
    except Exception:  # noqa: BLE001 - any failure: its traceback, then a non-zero exit
        traceback.print_exc()
    finally:
        os._exit(code)


def _table_builder():
    """The function that makes the PAGES frame; importing polars is the slow part,
    so it happens here, in parallel with the hashing."""
    import polars as pl

    from xpipe.extract import page_types
    from xpipe.readers.compact import read_u64
    from xpipe.schemas import FRAMES

    def table(domain: str, gfn: np.ndarray, hashes: np.ndarray, kpageflags) -> pl.DataFrame:
        flags = pl.repeat(None, len(gfn), dtype=pl.UInt64, eager=True).alias("kpageflags")
        if kpageflags is not None:
            kpf = read_u64(kpageflags)
            # As in normalise: frames past the end of /proc/kpageflags have no flags.
            inside = gfn < len(kpf)
            flags = pl.Series("kpageflags", kpf[np.minimum(gfn, len(kpf) - 1)] if len(kpf) else
                              np.zeros(len(gfn), np.uint64), dtype=pl.UInt64)
            if not inside.all():
                flags = flags.set(pl.Series(~inside), None)
        frames = pl.DataFrame({"domain": domain, "snapshot": 0, "time_s": 0.0, "gfn": gfn,
                               "hash": hashes, "kpageflags": flags}, schema=FRAMES.schema)
        return page_types(frames.lazy(), None).collect()

    return table
