"""Guest memory as QEMU writes it: raw `pmemsave` dumps and `dump-guest-memory` ELF cores,
as files or as a stream.

Only the ELF header is read here; the pages are hashed straight from the file
(xpipe.hashing.hash_file), so a dump never sits in memory whole. A capture never
writes a dump at all: :func:`hash_stream` hashes what QEMU writes into a pipe as it
arrives (xpipe.capture.guest), a few MiB at a time.
"""

from __future__ import annotations

import mmap
import os
import select
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpipe.errors import InputError
from xpipe.hashing import PAGE_SIZE, hash_file, hash_pages

PT_LOAD = 1
KINDS = ("auto", "pmemsave", "elf")


@dataclass(frozen=True)
class Run:
    """``pages`` consecutive pages at byte ``offset`` of the dump, guest frames from ``gfn``."""

    offset: int
    gfn: int
    pages: int


@contextmanager
def mapped(path: Path, what: str) -> Iterator[mmap.mmap]:
    """The file mapped read-only, for a reader of ``what`` (e.g. "a Xen dump-core file"):
    InputError when it is no regular file, empty, or cannot be mapped."""
    if not path.is_file():
        found = "not a regular file" if path.exists() else "no such file"
        raise InputError(path, None, f"expected {what}; {found}")
    with path.open("rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            raise InputError(path, "offset 0", f"expected {what}, found an empty file")
        try:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (ValueError, OSError) as e:  # emptied since fstat, or a file that cannot be mapped
            raise InputError(path, None, f"expected {what} that can be mapped ({e})") from None
        with m:
            yield m


def dump_runs(path: Path, kind: str = "auto") -> list[Run]:
    """Where the dump's pages are: the whole file (pmemsave) or each PT_LOAD segment (ELF).

    ``auto`` tells an ELF core by its magic number.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if not path.is_file():
        found = "not a regular file" if path.exists() else "no such file"
        raise InputError(path, None, f"expected a guest memory dump; {found}")
    with path.open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            raise InputError(path, "offset 0", "expected guest memory, found an empty file")
        try:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (ValueError, OSError) as e:  # emptied since fstat, or a file that cannot be mapped
            raise InputError(path, None, f"expected a guest memory dump that can be mapped ({e})") from None
        with m:
            if kind == "elf" or (kind == "auto" and m[:4] == b"\x7fELF"):
                return [Run(off, paddr // PAGE_SIZE, n // PAGE_SIZE)
                        for off, paddr, n in elf_load_segments(path, m)]
    if size % PAGE_SIZE:
        raise InputError(path, f"offset {size - size % PAGE_SIZE}",
                         f"expected a whole number of {PAGE_SIZE}-byte pages (pmemsave of guest RAM)")
    return [Run(0, 0, size // PAGE_SIZE)]


#: Bytes hashed at a time from a stream: 4 MiB, so a stream never sits in memory whole.
STREAM_CHUNK = 1024 * PAGE_SIZE
#: A read shorter than this (a quarter of the 1 MiB pipe a capture asks for) waits a little first.
STREAM_NAP_BELOW = 256 << 10


def hash_stream(fd: int, pages: int, name: str | Path, stop: threading.Event) -> np.ndarray:
    """Hashes of the ``pages`` pages a writer sends through the non-blocking pipe ``fd``
    (``name``: the pipe, for errors), hashed a chunk at a time as they arrive.

    Returns when the writer closes its end having sent exactly that much; more or
    less is an InputError. Before the writer comes and while nothing arrives, ``stop``
    is checked twice a second: set, the wait ends with an InputError (the writer
    failed, or the capture is going away).
    """
    out = np.empty(pages, dtype=np.uint64)
    buf = bytearray(min(STREAM_CHUNK, max(pages, 1) * PAGE_SIZE))
    view = memoryview(buf)
    total, got, filled = pages * PAGE_SIZE, 0, 0
    # A FIFO opened for reading reports no hang-up until a writer has come and gone,
    # so polling waits for the writer, its data, and its close alike.
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    while True:
        if not poller.poll(500):
            if stop.is_set():
                raise InputError(name, f"offset {got}", f"expected {total} bytes of guest memory; "
                                                        "the writer stopped sending")
            continue
        try:
            n = os.readv(fd, [view[filled:]])
        except BlockingIOError:
            continue
        if n == 0:  # the writer closed its end
            break
        got += n
        filled += n
        if got > total:
            raise InputError(name, f"offset {total}", f"expected {total} bytes of guest memory, got more")
        if filled == len(buf) or got == total:  # both whole pages: the buffer is, and so is total
            at = (got - filled) // PAGE_SIZE
            out[at : at + filled // PAGE_SIZE] = hash_pages(view[:filled])
            filled = 0
        elif n < STREAM_NAP_BELOW:
            # QEMU writes 4 KiB at a time; waking for each costs more than the data. Half a
            # millisecond lets the pipe fill: 3 GiB streamed in 5 s instead of 10 s here.
            time.sleep(0.0005)
    if got != total:
        raise InputError(name, f"offset {got}", f"expected {total} bytes of guest memory; "
                                                f"the stream ended after {got}")
    return out


def frames_of(runs: list[Run]) -> np.ndarray:
    """The guest frame numbers of ``runs``, in the order their pages are hashed."""
    return np.concatenate([np.arange(r.gfn, r.gfn + r.pages, dtype=np.int64) for r in runs])


def _file_state(path: Path) -> tuple[int, int] | None:
    """(size, modification time) of ``path``; None when it is gone."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _check_unchanged(path: Path, before: tuple[int, int] | None) -> None:
    after = _file_state(path)
    if after != before:
        how = f"{before[0]} -> {after[0]} bytes" if before and after else "removed"
        raise InputError(path, None,
                         f"expected a dump no process is writing; it changed while it was read ({how})")


def read_dump(path: str | Path, kind: str = "auto", threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(gfn, hash) of every page of a dump, by guest-physical address; ``threads``: 0 for one per core.

    The dump must not change while it is read: a change of its size or
    modification time between the start and the end, or a file that ends
    before its pages do, is an InputError.
    """
    path = Path(path)
    before = _file_state(path)
    runs = dump_runs(path, kind)
    try:
        hashes = hash_file(path, [(r.offset, r.pages) for r in runs], threads)
    except ValueError:  # pages past the end of the file: it shrank since dump_runs looked
        _check_unchanged(path, before)
        raise
    _check_unchanged(path, before)
    gfn = frames_of(runs)
    if len(runs) > 1:  # ELF segments need not come in address order
        order = np.argsort(gfn, kind="stable")
        gfn, hashes = gfn[order], hashes[order]
        if (np.diff(gfn) == 0).any():
            raise InputError(path, None, "expected PT_LOAD segments at distinct guest-physical addresses")
    return gfn, hashes


def read_pmemsave(path: str | Path, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(gfn, hash) of a raw dump of guest-physical memory starting at address 0."""
    return read_dump(path, "pmemsave", threads)


def read_elf_core(path: str | Path, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(gfn, hash) of every page in the PT_LOAD segments of a QEMU ELF core, by guest-physical address."""
    return read_dump(path, "elf", threads)


def elf_load_segments(path: Path, m) -> list[tuple[int, int, int]]:
    """(file offset, guest-physical address, size) of each PT_LOAD segment of an ELF64 core."""
    if len(m) < 64 or m[:4] != b"\x7fELF":
        raise InputError(path, "offset 0", "expected an ELF core (magic 7f 45 4c 46)")
    if m[4] != 2 or m[5] != 1:
        raise InputError(path, "offset 4", "expected a 64-bit little-endian ELF core")
    e_phoff, = struct.unpack_from("<Q", m, 32)
    e_phentsize, e_phnum = struct.unpack_from("<HH", m, 54)
    segs = []
    for i in range(e_phnum):
        at = e_phoff + i * e_phentsize
        if at + 56 > len(m):
            raise InputError(path, f"offset {at}", "expected a program header; file is truncated")
        p_type, _flags, p_offset, _vaddr, p_paddr, p_filesz, _memsz, _align = struct.unpack_from(
            "<IIQQQQQQ", m, at
        )
        if p_type != PT_LOAD or p_filesz == 0:
            continue
        if p_offset + p_filesz > len(m):
            raise InputError(path, f"offset {at}", f"PT_LOAD segment {i} runs past the end of the file")
        if p_paddr % PAGE_SIZE or p_filesz % PAGE_SIZE:
            raise InputError(path, f"offset {at}", f"PT_LOAD segment {i} is not 4 KiB aligned")
        segs.append((p_offset, p_paddr, p_filesz))
    if not segs:
        raise InputError(path, f"offset {e_phoff}", "expected at least one PT_LOAD segment")
    return segs
