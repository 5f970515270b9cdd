"""Guest memory as QEMU's ``dump-guest-memory`` writes it in the kdump-compressed formats.

``kdump-zlib``, ``kdump-lzo`` and ``kdump-snappy`` are makedumpfile's *flattened*
format: a 4096-byte header starting ``makedumpfile``, then records of
(big-endian i64 offset, i64 size, ``size`` bytes) that together write the plain
dump, and an end record (-1, -1). QEMU 8.2 and later also write
``kdump-raw-*``: the plain dump itself (makedumpfile's diskdump format), which
is what the flattened records reassemble to. This module reads both; a
flattened dump is not copied, its records are mapped (dump offset -> file
offset) and read in place.

The plain dump, as QEMU's dump/dump.c writes it (all fields little-endian for
x86 guests; one block = one 4096-byte page):

- block 0: ``disk_dump_header`` (signature ``KDUMP   ``, header_version 6,
  status = compression, block_size, sub_hdr_size and bitmap_blocks in blocks,
  max_mapnr);
- block 1: ``kdump_sub_header`` (``max_mapnr_64`` at byte 96) and the ELF notes;
- two bitmaps of ``bitmap_blocks / 2`` blocks each, one bit per pfn: the
  second says which pfns the dump holds (QEMU writes both the same; makedumpfile
  clears excluded pages in the second);
- one 24-byte page descriptor (offset u64, size u32, flags u32, page_flags u64)
  per pfn set in the second bitmap, in pfn order;
- page data: each page compressed (flags ``DUMP_DH_COMPRESSED_ZLIB`` 1,
  ``_LZO`` 2, ``_SNAPPY`` 4) or, when that does not make it smaller, raw
  (flags 0, size 4096). Every all-zero page points at one shared raw zero page.

QEMU's pfn is the guest-physical address / 4096 on x86 (its ARCH_PFN_OFFSET is
0), so the pfns are guest frame numbers; pfns the bitmap leaves out (holes
between RAM blocks) are not in the result, as with ELF cores. Only the 64-bit
header is read: QEMU writes it for every x86 PC guest (their firmware sits just
below 4 GiB). Every malformed file raises xpipe.errors.InputError naming the
file offset; no size read from the file is trusted before it is checked
against the file's size.
"""

from __future__ import annotations

import mmap
import os
import struct
import zlib
from bisect import bisect_right
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path

import numpy as np

from xpipe.errors import InputError
from xpipe.hashing import PAGE_SIZE, hash_pages
from xpipe.readers.memdump import mapped

FLAT_SIGNATURE = b"makedumpfile"
FLAT_HEADER_SIZE = 4096  # MAX_SIZE_MDF_HEADER
KDUMP_SIGNATURE = b"KDUMP   "
COMPRESSED_ZLIB, COMPRESSED_LZO, COMPRESSED_SNAPPY = 0x1, 0x2, 0x4
COMPRESSION_NAMES = {0: "raw", COMPRESSED_ZLIB: "zlib", COMPRESSED_LZO: "lzo", COMPRESSED_SNAPPY: "snappy"}

HEADER_SIZE = 464  # DiskDumpHeader64
SUB_HEADER_SIZE = 104  # KdumpSubHeader64
_VERSION, _STATUS, _BLOCK_SIZE, _SUB_HDR_SIZE, _BITMAP_BLOCKS, _MAX_MAPNR = 8, 424, 428, 432, 436, 440
_HEADER32_BLOCK_SIZE = 416  # where DiskDumpHeader32 keeps block_size
_SUB_MAX_MAPNR_64 = 96
DESCRIPTOR = np.dtype([("offset", "<u8"), ("size", "<u4"), ("flags", "<u4"), ("page_flags", "<u8")])
#: Distinct pages decompressed and hashed per task.
CHUNK_PAGES = 2048
_POPCOUNT = np.array([i.bit_count() for i in range(256)], dtype=np.int64)


class _Dump:
    """The plain dump's bytes: the file itself (raw) or the flattened file's records, mapped.

    ``dst``/``src``/``length``: the dump's bytes dst..dst+length are the file's
    bytes src..src+length (sorted by dst, non-overlapping). Bytes no record
    wrote read as zeros where a reader allows holes (the bitmaps' tail, which
    QEMU never writes), and are an error elsewhere.
    """

    def __init__(self, path: Path, m: mmap.mmap) -> None:
        self.path = path
        self.m = m
        self.file_size = len(m)
        self.flat = m[: len(FLAT_SIGNATURE)] == FLAT_SIGNATURE
        if self.flat:
            segments = _flat_segments(path, m)
        else:
            segments = [(0, 0, self.file_size)]
        self.dst = np.array([s[0] for s in segments], dtype=np.int64)
        self.src = np.array([s[1] for s in segments], dtype=np.int64)
        self.length = np.array([s[2] for s in segments], dtype=np.int64)
        self.size = int((self.dst + self.length).max()) if segments else 0
        self._starts = self.dst.tolist()

    def where(self, at: int) -> str:
        """``offset N``: N the file offset holding byte ``at`` of the dump."""
        if not self.flat:
            return f"offset {at}"
        i = bisect_right(self._starts, at) - 1
        if i >= 0 and at < self._starts[i] + int(self.length[i]):
            return f"offset {int(self.src[i]) + at - self._starts[i]}"
        return f"offset {self.file_size} (byte {at} of the reassembled dump, which no record writes)"

    def fail(self, at: int, expected: str) -> InputError:
        return InputError(self.path, self.where(at), expected)

    def read(self, at: int, n: int, what: str, holes: bool = False) -> bytes:
        """Bytes ``at``..``at + n`` of the dump; an InputError naming ``what`` if they are not there."""
        if n > self.file_size:  # never allocate from a size the file could not hold
            raise self.fail(at, f"expected {what} of at most the file's {self.file_size} bytes; "
                                f"the dump declares {n} bytes")
        if at + n > self.size:
            ends = "the file ends" if not self.flat else "the flattened records end"
            raise self.fail(min(at, self.size), f"expected {what} ({n} bytes at byte {at} of the dump); "
                                                f"{ends} at byte {self.size}")
        i = bisect_right(self._starts, at) - 1
        if i >= 0 and at + n <= self._starts[i] + int(self.length[i]):
            s = int(self.src[i]) + at - self._starts[i]
            return self.m[s : s + n]
        out = bytearray(n)
        covered = 0
        i = max(i, 0)
        while i < len(self._starts) and self._starts[i] < at + n:
            lo = max(at, self._starts[i])
            hi = min(at + n, self._starts[i] + int(self.length[i]))
            if lo < hi:
                s = int(self.src[i]) + lo - self._starts[i]
                out[lo - at : hi - at] = self.m[s : s + hi - lo]
                covered += hi - lo
            i += 1
        if covered < n and not holes:
            raise self.fail(at, f"expected {what} ({n} bytes at byte {at} of the dump); "
                                f"no record of the flattened dump writes {n - covered} of them")
        return bytes(out)

    def file_offsets(self, at: np.ndarray, n: np.ndarray) -> np.ndarray:
        """File offset of each range ``at``..``at + n`` lying inside one segment, else -1."""
        i = np.searchsorted(self.dst, at, side="right") - 1
        ok = i >= 0
        i = np.maximum(i, 0)
        ok &= at + n <= self.dst[i] + self.length[i]
        return np.where(ok, self.src[i] + at - self.dst[i], -1)


def _flat_segments(path: Path, m: mmap.mmap) -> list[tuple[int, int, int]]:
    """(dump offset, file offset, bytes) of every record of a flattened dump, later records winning."""
    size = len(m)
    if size < FLAT_HEADER_SIZE:
        raise InputError(path, f"offset {size}",
                         f"expected the {FLAT_HEADER_SIZE}-byte makedumpfile header of a flattened dump; "
                         f"the file ends")
    kind, _version = struct.unpack_from(">qq", m, 16)
    if m[len(FLAT_SIGNATURE) : 16].strip(b"\0") or kind != 1:
        raise InputError(path, "offset 16",
                         f"expected a flattened dump header (type 1 after 'makedumpfile'), got type {kind}")
    records = []
    pos = FLAT_HEADER_SIZE
    while True:
        if pos + 16 > size:
            raise InputError(path, f"offset {pos}",
                             "expected a flattened record header (offset, size) or the end record (-1, -1); "
                             "the file ends (truncated)")
        off, n = struct.unpack_from(">qq", m, pos)
        if off == -1 and n == -1:
            break
        if off < 0 or n < 0:
            raise InputError(path, f"offset {pos}",
                             f"expected a flattened record with offset and size >= 0, got ({off}, {n})")
        if pos + 16 + n > size:
            raise InputError(path, f"offset {pos}",
                             f"expected {n} bytes of the record for dump offset {off}; "
                             f"the file ends after {size - pos - 16} (truncated)")
        if n:
            records.append((off, pos + 16, n))
        pos += 16 + n
    records_by_dst = sorted(records, key=lambda r: r[0])  # stable: later records stay later
    if all(a[0] + a[2] <= b[0] for a, b in pairwise(records_by_dst)):
        return records_by_dst
    return _paint(records)


def _paint(records: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Segments of overlapping records in stream order, each byte from the last record writing it
    (makedumpfile rewrites its sub-header; QEMU never overlaps)."""
    segs: list[tuple[int, int, int]] = []
    starts: list[int] = []
    for d, s, n in records:
        e = d + n
        i = bisect_right(starts, d) - 1
        if i < 0 or segs[i][0] + segs[i][2] <= d:
            i += 1
        j, new = i, [(d, s, n)]
        while j < len(segs) and segs[j][0] < e:
            sd, ss, sn = segs[j]
            if sd < d:
                new.append((sd, ss, d - sd))
            if sd + sn > e:
                new.append((e, ss + e - sd, sd + sn - e))
            j += 1
        new.sort()
        segs[i:j] = new
        starts[i:j] = [x[0] for x in new]
    return segs


def read_kdump(path: str | Path, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(gfn, hash) of every page in a QEMU kdump-compressed dump (flattened or raw), in frame order.

    ``threads``: pages are decompressed and hashed on this many threads (0: one per core).
    """
    path = Path(path)
    with mapped(path, "a kdump-compressed guest memory dump") as m:
        if m[:8] != KDUMP_SIGNATURE and m[: len(FLAT_SIGNATURE)] != FLAT_SIGNATURE:
            head = bytes(m[:12])
            cut = any(sig.startswith(head) for sig in (KDUMP_SIGNATURE, FLAT_SIGNATURE))
            raise InputError(path, "offset 0",
                             "expected a kdump-compressed dump: signature 'KDUMP   ' (raw) or "
                             f"'makedumpfile' (flattened), got {head!r}"
                             + (f"; the file ends after {len(m)} bytes (truncated)" if cut else ""))
        return _read(_Dump(path, m), threads)


def _read(dump: _Dump, threads: int) -> tuple[np.ndarray, np.ndarray]:
    sig = dump.read(0, len(KDUMP_SIGNATURE), "the disk_dump_header's signature")
    if sig != KDUMP_SIGNATURE:
        raise dump.fail(0, f"expected the disk_dump_header signature 'KDUMP   ', got {sig!r}")
    h = dump.read(0, HEADER_SIZE, f"the {HEADER_SIZE}-byte disk_dump_header")
    version, = struct.unpack_from("<I", h, _VERSION)
    block_size, sub_blocks, bitmap_blocks, max_mapnr = struct.unpack_from("<IIII", h, _BLOCK_SIZE)
    if block_size != PAGE_SIZE:
        if struct.unpack_from("<I", h, _HEADER32_BLOCK_SIZE)[0] == PAGE_SIZE:
            raise dump.fail(_HEADER32_BLOCK_SIZE, "expected the 64-bit disk_dump_header QEMU writes for "
                                                  "x86-64 guests; this is the 32-bit one")
        raise dump.fail(_BLOCK_SIZE, f"expected block_size {PAGE_SIZE} (4 KiB pages), got {block_size}")
    if version >= 6:
        sub = dump.read(block_size, SUB_HEADER_SIZE, f"the {SUB_HEADER_SIZE}-byte kdump_sub_header")
        max_mapnr, = struct.unpack_from("<Q", sub, _SUB_MAX_MAPNR_64)
    if bitmap_blocks == 0 or bitmap_blocks % 2:
        raise dump.fail(_BITMAP_BLOCKS, f"expected an even, non-zero bitmap_blocks (two bitmaps), "
                                        f"got {bitmap_blocks}")
    bitmap_at = (1 + sub_blocks) * block_size
    bitmap_len = bitmap_blocks // 2 * block_size
    pages_at = bitmap_at + 2 * bitmap_len
    if pages_at > dump.size:
        field = _SUB_HDR_SIZE if bitmap_at > dump.size else _BITMAP_BLOCKS
        raise dump.fail(field, f"expected {sub_blocks} sub-header and {bitmap_blocks} bitmap blocks "
                               f"inside the dump ({pages_at} bytes); it has {dump.size}")
    if max_mapnr > bitmap_len * 8:
        field = block_size + _SUB_MAX_MAPNR_64 if version >= 6 else _MAX_MAPNR
        raise dump.fail(field, f"expected max_mapnr at most the {bitmap_len * 8} pfns the bitmap holds, "
                               f"got {max_mapnr}")
    bitmap = np.frombuffer(dump.read(bitmap_at + bitmap_len, -(-max_mapnr // 8),
                                     "the second dump bitmap", holes=True), dtype=np.uint8).copy()
    if max_mapnr % 8:
        bitmap[-1] &= (1 << (max_mapnr % 8)) - 1
    nonzero = np.flatnonzero(bitmap)
    n = int(_POPCOUNT[bitmap[nonzero]].sum())
    table = dump.read(pages_at, n * DESCRIPTOR.itemsize,
                      f"{n} page descriptors (one per pfn set in the bitmap)")
    bits = np.unpackbits(bitmap[nonzero, None], axis=1, bitorder="little").astype(bool)
    gfn = (nonzero[:, None] * 8 + np.arange(8))[bits].astype(np.int64)
    desc = np.frombuffer(table, dtype=DESCRIPTOR)
    _check_descriptors(dump, desc, gfn, pages_at)
    return gfn, _hash_pages(dump, desc, gfn, pages_at, threads)


def _check_descriptors(dump: _Dump, desc: np.ndarray, gfn: np.ndarray, pages_at: int) -> None:
    """Each descriptor names one compression (or none) and a page inside the dump."""
    flags, size, offset = desc["flags"], desc["size"].astype(np.int64), desc["offset"]
    beyond = offset > np.uint64(dump.size)
    past_end = beyond | (np.where(beyond, 0, offset).astype(np.int64) + size > dump.size)
    problems = [
        (~np.isin(flags, list(COMPRESSION_NAMES)),
         lambda i: f"expected flags 0 (raw), 1 (zlib), 2 (lzo) or 4 (snappy), got {flags[i]:#x}"),
        ((flags == 0) & (size != PAGE_SIZE),
         lambda i: f"expected a raw page of {PAGE_SIZE} bytes, got size {size[i]}"),
        ((flags != 0) & ((size == 0) | (size > PAGE_SIZE)),
         lambda i: f"expected a compressed page of 1 to {PAGE_SIZE} bytes, got size {size[i]}"),
        (past_end,
         lambda i: f"expected page data inside the dump; it points to bytes {offset[i]}.."
                   f"{int(offset[i]) + int(size[i])}, past the dump's end at {dump.size}"),
    ]
    bad = np.logical_or.reduce([b for b, _ in problems])
    if bad.any():  # the first bad descriptor, with the first thing wrong with it
        i = int(np.argmax(bad))
        message = next(m for b, m in problems if b[i])
        raise dump.fail(pages_at + i * DESCRIPTOR.itemsize, f"page descriptor of pfn {gfn[i]}: {message(i)}")


def _hash_pages(dump: _Dump, desc: np.ndarray, gfn: np.ndarray, pages_at: int, threads: int) -> np.ndarray:
    """Hash of each descriptor's page; each distinct (offset, size, flags) is decompressed once
    (QEMU points every zero page at one page of data)."""
    if not len(desc):
        return np.empty(0, dtype=np.uint64)
    offset = desc["offset"].astype(np.int64)  # < dump.size: checked
    kind = (desc["size"].astype(np.int64) << 8) | desc["flags"].astype(np.int64)
    order = np.lexsort((kind, offset))
    first = np.ones(len(order), dtype=bool)
    first[1:] = (np.diff(offset[order]) != 0) | (np.diff(kind[order]) != 0)
    inverse = np.empty(len(order), dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    rep = order[first]  # one descriptor per distinct page, in offset order
    at, size, flags = offset[rep], kind[rep] >> 8, kind[rep] & 0xFF
    src = dump.file_offsets(at, size)

    def chunk(lo: int, hi: int) -> np.ndarray:
        buf = bytearray((hi - lo) * PAGE_SIZE)
        rows = zip(at[lo:hi].tolist(), size[lo:hi].tolist(), flags[lo:hi].tolist(), src[lo:hi].tolist())
        for k, (a, n, fl, s) in enumerate(rows):
            try:
                data = dump.m[s : s + n] if s >= 0 else dump.read(a, n, "the page's data")
                page = _decompress(fl, data)
            except (ValueError, InputError) as e:
                i = int(rep[lo + k])
                reason = e.expected if isinstance(e, InputError) else str(e)
                raise dump.fail(pages_at + i * DESCRIPTOR.itemsize,
                                f"page descriptor of pfn {gfn[i]} (data at byte {a} of the dump): "
                                f"{reason}") from None
            buf[k * PAGE_SIZE : (k + 1) * PAGE_SIZE] = page
        return hash_pages(buf)

    bounds = [(lo, min(lo + CHUNK_PAGES, len(rep))) for lo in range(0, len(rep), CHUNK_PAGES)]
    workers = min(threads or len(os.sched_getaffinity(0)), len(bounds))
    if workers <= 1:
        parts = [chunk(lo, hi) for lo, hi in bounds]
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="kdump") as pool:
            parts = list(pool.map(lambda b: chunk(*b), bounds))
    return np.concatenate(parts)[inverse]


def _decompress(flags: int, data: bytes) -> bytes:
    """The 4096 bytes of one page; ValueError saying what was wrong."""
    if flags == 0:
        return data
    name = COMPRESSION_NAMES[flags]
    if flags == COMPRESSED_ZLIB:
        d = zlib.decompressobj()
        try:
            page = d.decompress(data, PAGE_SIZE)  # at most one page: no decompression bomb
        except zlib.error as e:
            raise ValueError(f"expected zlib data of one {PAGE_SIZE}-byte page; it does not decompress ({e})")
        if len(page) == PAGE_SIZE and not d.eof:
            raise ValueError(f"expected zlib data of one {PAGE_SIZE}-byte page; it holds more")
        if d.unused_data:
            raise ValueError(f"expected the descriptor's {len(data)} bytes to be one zlib stream; "
                             f"{len(d.unused_data)} bytes follow its end")
    elif flags == COMPRESSED_LZO:
        import lzallright

        try:
            page = lzallright.LZOCompressor.decompress(data, output_size_hint=PAGE_SIZE)
        except lzallright.LZOError as e:
            raise ValueError(f"expected LZO1X data of one {PAGE_SIZE}-byte page; "
                             f"it does not decompress ({e.args[0]})") from None
    else:
        import cramjam

        try:
            declared = cramjam.snappy.decompress_raw_len(data)
            if declared != PAGE_SIZE:  # checked first: never allocate a size the data declares
                raise ValueError(f"expected snappy data of one {PAGE_SIZE}-byte page; "
                                 f"it declares {declared} bytes")
            page = bytes(cramjam.snappy.decompress_raw(data))
        except cramjam.DecompressionError as e:
            raise ValueError(f"expected snappy data of one {PAGE_SIZE}-byte page; "
                             f"it does not decompress ({e})") from None
    if len(page) != PAGE_SIZE:
        raise ValueError(f"expected {name} data of one {PAGE_SIZE}-byte page; it decompresses to "
                         f"{len(page)} bytes")
    return page
