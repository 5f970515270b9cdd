"""Guest memory as QEMU writes it: raw `pmemsave` dumps and `dump-guest-memory` ELF cores.

Both are memory-mapped and hashed page by page, so a dump never sits in memory whole.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

import numpy as np

from xpipe.errors import InputError
from xpipe.hashing import PAGE_SIZE, hash_pages

PT_LOAD = 1


def _mapped(path: Path):
    f = path.open("rb")
    size = path.stat().st_size
    if size == 0:
        f.close()
        raise InputError(path, "offset 0", "expected guest memory, found an empty file")
    return f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def read_pmemsave(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(gfn, hash) of a raw dump of guest-physical memory starting at address 0."""
    path = Path(path)
    f, m = _mapped(path)
    try:
        if len(m) % PAGE_SIZE:
            raise InputError(
                path, f"offset {len(m) - len(m) % PAGE_SIZE}",
                f"expected a whole number of {PAGE_SIZE}-byte pages (pmemsave of guest RAM)",
            )
        hashes = hash_pages(m)
    finally:
        m.close()
        f.close()
    return np.arange(len(hashes), dtype=np.int64), hashes


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


def read_elf_core(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(gfn, hash) of every page in the PT_LOAD segments of a QEMU ELF core, by guest-physical address."""
    path = Path(path)
    f, m = _mapped(path)
    try:
        gfns, hashes = [], []
        for off, paddr, size in elf_load_segments(path, m):
            hashes.append(hash_pages(memoryview(m)[off : off + size]))
            gfns.append(np.arange(paddr // PAGE_SIZE, (paddr + size) // PAGE_SIZE, dtype=np.int64))
        gfn, h = np.concatenate(gfns), np.concatenate(hashes)
    finally:
        m.close()
        f.close()
    order = np.argsort(gfn, kind="stable")
    return gfn[order], h[order]
