"""`xpipe inspect`: what a trace file is and whether it is whole, before a long run.

Each format is detected from the file's first bytes (or named with --format)
and read whole by the reader the workflow uses for it, so a file that inspects
clean normalises clean. A bad file gives the reader's one-line InputError.
"""

from __future__ import annotations

import gzip
import re
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np

from xpipe.bundle import DELTA_MAGIC
from xpipe.errors import InputError
from xpipe.hashing import PAGE_SIZE


def _elf_sections(path: Path, head: bytes) -> set[str]:
    """Section names of an ELF64 little-endian file (empty when there is no table)."""
    if len(head) < 64 or head[4] != 2 or head[5] != 1:
        return set()
    shoff, = struct.unpack_from("<Q", head, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", head, 0x3A)
    size = path.stat().st_size
    if not shoff or shentsize < 64 or shstrndx >= shnum or shoff + shnum * shentsize > size:
        return set()
    with path.open("rb") as f:
        f.seek(shoff + shstrndx * shentsize)
        hdr = f.read(shentsize)
        stroff, strsize = struct.unpack_from("<QQ", hdr, 0x18)
        if stroff + strsize > size or strsize > 1 << 20:
            return set()
        f.seek(stroff)
        names = f.read(strsize)
    return {n.decode("ascii", "replace") for n in names.split(b"\0") if n}


_FIU_LINE = re.compile(rb"\d+ \d+ \S+ \d+ \d+ [RW] \d+ \d+ [0-9a-fA-F]{32}\s")
#: A UMass memory trace opens with a line of text (its header), binary hashes follow.
_UMASS_START = re.compile(rb"[\t\r\x20-\x7e]+\n")


def _head(path: Path, n: int = 4096) -> bytes:
    with path.open("rb") as f:
        head = f.read(n)
    if head[:2] == b"\x1f\x8b":
        try:
            with gzip.open(path, "rb") as g:
                return g.read(n)
        except (OSError, EOFError) as e:
            raise InputError(path, None, f"expected a gzip file ({e})") from None
    return head


def detect(path: Path) -> str:
    """The format of ``path`` from its first bytes and name."""
    if not path.is_file():
        raise InputError(path, None, "expected a file; " + ("not a regular file" if path.exists() else "no such file"))
    head = _head(path)
    if not head:
        raise InputError(path, "offset 0", "expected a trace or dump, found an empty file")
    if head[:4] == b"\x7fELF":
        return "xen" if ".xen_pages" in _elf_sections(path, head) else "elf"
    if head.startswith((b"makedumpfile", b"KDUMP   ")):
        return "kdump"
    if b"blk_co_preadv" in head:
        return "qemu-blk"
    if _FIU_LINE.match(head):
        return "fiu"
    if head.startswith(DELTA_MAGIC):
        return "delta"
    if path.name.endswith((".xxh", ".xxh.gz")):
        return "compact"
    if _UMASS_START.match(head) and not _head(path, 1 << 20).isascii():  # text lines, then binary hashes
        return "umass"
    if path.stat().st_size % PAGE_SIZE == 0:
        return "raw"
    raise InputError(path, "offset 0", f"expected one of the formats {', '.join(FORMATS)}; name it with --format")


def _snapshot(kind: str) -> Callable[[Path], str]:
    def describe(path: Path, skipped: dict[str, int] | None) -> str:  # a dump has no records to skip
        from xpipe.readers.registry import SNAPSHOT_READERS

        if kind not in SNAPSHOT_READERS:
            raise InputError(path, None, f"no reader for {kind!r} in this version of xpipe")
        gfn, h = SNAPSHOT_READERS[kind](path, 0)
        span = f", frames {int(gfn.min()):,}-{int(gfn.max()):,}" if len(gfn) else ""
        return (f"{len(gfn):,} frames ({len(gfn) * PAGE_SIZE / 2**20:,.1f} MiB){span}, "
                f"{len(np.unique(h)):,} distinct contents, hash xxh3-64")

    return describe


def _delta(path: Path, skipped: dict[str, int] | None) -> str:
    from xpipe.readers.delta import read_delta

    d = read_delta(path)
    share = f" ({len(d.gfn) / d.frames:.1%})" if d.frames else ""
    return (f"{len(d.gfn):,} of {d.frames:,} frames changed{share}, {len(np.unique(d.hashes)):,} distinct new "
            f"contents, hash xxh3-64; the changes to the snapshot before it (page hashes with CRC-32 "
            f"{d.base_crc:#010x})")


def _qemu_blk(path: Path, skipped: dict[str, int] | None) -> str:
    from xpipe.readers.blktrace import read_blk_trace

    t, off, n = read_blk_trace(path, 0.0, skipped=skipped)
    if not len(t):
        return "0 reads"
    return (f"{len(t):,} reads, {int(n.sum()) / 2**20:,.1f} MiB, timestamps {t.min():.6f}-{t.max():.6f} s "
            f"(epoch; {t.max() - t.min():.1f} s), offsets up to {int((off + n).max()):,} bytes")


def _fiu(path: Path, skipped: dict[str, int] | None) -> str:
    from xpipe.readers.fiu import read_fiu

    tr = read_fiu(path, skipped)
    _, counts = np.unique(tr.digest, return_counts=True)
    return (f"{len(tr):,} requests ({int((~tr.write).sum()):,} reads, {int(tr.write.sum()):,} writes), "
            f"devices {', '.join(sorted(set(tr.device)))}, {len(set(tr.process)):,} processes, "
            f"{tr.time_s.max() - tr.time_s.min():,.1f} s, {len(counts):,} distinct contents, hash md5 "
            f"(most frequent, taken as the zero block: {counts.max() / len(tr):.1%} of requests)")


def _umass(path: Path, skipped: dict[str, int] | None) -> str:
    from xpipe.readers.umass import read_umass_trace

    tr = read_umass_trace(path)
    _, counts = np.unique(tr.hashes, return_counts=True)
    return (f"{len(tr.hashes):,} pages ({len(tr.hashes) * PAGE_SIZE / 2**20:,.1f} MiB) after a header of "
            f"{len(tr.header):,} lines ({tr.header[0][:60]!r}), {len(counts):,} distinct contents, hash 32-bit "
            f"(most frequent, taken as the zero page: {counts.max() / len(tr.hashes):.1%} of pages)")


#: format -> what it reports, reading the whole file with the workflow's reader
#: (leniently, counting bad records by kind, when given a dict to count into).
FORMATS: dict[str, Callable[[Path, dict[str, int] | None], str]] = {
    "raw": _snapshot("pmemsave"),
    "elf": _snapshot("elf"),
    "kdump": _snapshot("kdump"),
    "xen": _snapshot("xen"),
    "compact": _snapshot("pages"),
    "delta": _delta,
    "qemu-blk": _qemu_blk,
    "fiu": _fiu,
    "umass": _umass,
}


#: The formats read record by record, whose bad records --lenient can skip.
LINE_FORMATS = ("qemu-blk", "fiu")


def inspect(path: str | Path, fmt: str | None = None, lenient: bool = False) -> str:
    """One line on ``path``: its format and what it holds; InputError when it is not whole.
    ``lenient``: bad records of a line format are skipped and counted in the line instead."""
    path = Path(path)
    if fmt is None:
        fmt = detect(path)
    elif fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    skipped: dict[str, int] | None = {} if lenient and fmt in LINE_FORMATS else None
    line = f"{path}: {fmt}, {FORMATS[fmt](path, skipped)}"
    if skipped:
        kinds = ", ".join(f"{k}: {v:,}" for k, v in sorted(skipped.items()))
        line += f"; SKIPPED {sum(skipped.values()):,} bad records ({kinds})"
    return line
