"""FIU I/O-deduplication block traces (SNIA IOTTA: homes, mail, web-vm).

One request a line: ``ts_ns pid process lba size R|W major minor md5``; lba and
size in 512-byte sectors, one MD5 per request: per 4 KiB block (8 sectors) in
web-vm and mail, per 512 B (1 sector) in homes, whose sector reads make up 4 KiB
page reads (sector_pages). Some files interleave several devices, so a block is
keyed by (major:minor, lba).

Contents are MD5 digests, not xxh3-64: a trace's contents are compared only
with contents of the same hash kind (the first 8 bytes of the digest, read
little-endian, stand for it). Which digest is the zero block is not documented,
so it is found from the data (the most frequent digest), as the trace sets
suggest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash

from xpipe.errors import InputError, bad_record
from xpipe.hashing import PAGE_SIZE, ZERO_HASH
from xpipe.readers.compact import read_bytes

#: What a line must be; ts and lba are unsigned decimals, md5 32 hex digits.
_LINE = re.compile(
    rb"(?P<ts>\d+) (?P<pid>\d+) (?P<proc>\S+) (?P<lba>\d+) (?P<size>\d+) (?P<op>[RW]) "
    rb"(?P<major>\d+) (?P<minor>\d+) (?P<md5>[0-9a-fA-F]{32})"
)
_EXPECTED = "expected 'ts_ns pid process lba size R|W major minor md5' (FIU I/O-dedup trace)"
#: lba and size count 512-byte sectors
SECTOR = 512
PAGE_SECTORS = PAGE_SIZE // SECTOR


@dataclass
class FiuTrace:
    """One array per field, one element per request, in trace order."""

    time_s: np.ndarray  # float64, from ts_ns
    process: np.ndarray  # object (str)
    sector: np.ndarray  # int64, the request's first sector
    sectors: np.ndarray  # int64, its length in sectors
    write: np.ndarray  # bool
    device: np.ndarray  # object (str), "major:minor"
    digest: np.ndarray  # uint64: the first 8 bytes of the MD5, little-endian
    line: np.ndarray  # int64: the request's line in the file

    def __len__(self) -> int:
        return len(self.time_s)


def digest64(md5_hex: bytes) -> int:
    return int.from_bytes(bytes.fromhex(md5_hex.decode("ascii"))[:8], "little")


def read_fiu(path: str | Path, skipped: dict[str, int] | None = None) -> FiuTrace:
    """Every request of the trace; InputError names the line of the first bad one. With
    ``skipped`` (lenient reading) bad lines are counted there by kind and left out."""
    path = Path(path)
    data = read_bytes(path)
    cols: dict[str, list] = {k: [] for k in ("ts", "proc", "lba", "size", "op", "dev", "md5", "line")}
    for lineno, line in enumerate(data.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        m = _LINE.fullmatch(line)
        if not m:
            bad_record(skipped, "malformed line", path, f"line {lineno}",
                       f"{_EXPECTED}; got {line[:120].decode('utf-8', 'replace')!r}")
            continue
        size = int(m["size"])
        if size == 0 or int(m["lba"]) >= 1 << 53 or int(m["ts"]) >= 1 << 63:
            bad_record(skipped, "size 0 or number out of range", path, f"line {lineno}",
                       f"{_EXPECTED} with a size of 1 or more sectors and lba and ts in range")
            continue
        cols["ts"].append(int(m["ts"]))
        cols["proc"].append(m["proc"].decode("utf-8", "replace"))
        cols["lba"].append(int(m["lba"]))
        cols["size"].append(size)
        cols["op"].append(m["op"] == b"W")
        cols["dev"].append(f"{int(m['major'])}:{int(m['minor'])}")
        cols["md5"].append(digest64(m["md5"]))
        cols["line"].append(lineno)
    if not cols["ts"]:
        raise InputError(path, None, f"{_EXPECTED}; found no request")
    return FiuTrace(
        time_s=np.asarray(cols["ts"], dtype=np.float64) / 1e9,
        process=np.asarray(cols["proc"], dtype=object),
        sector=np.asarray(cols["lba"], dtype=np.int64),
        sectors=np.asarray(cols["size"], dtype=np.int64),
        write=np.asarray(cols["op"], dtype=bool),
        device=np.asarray(cols["dev"], dtype=object),
        digest=np.asarray(cols["md5"], dtype=np.uint64),
        line=np.asarray(cols["line"], dtype=np.int64),
    )


def fiu_requests(path: Path, start_epoch_s: float | None, select: dict[str, str], disk_bytes: int | None,
                 skipped: dict[str, int] | None = None):
    """The read-trace interface (xpipe.readers.registry): (time_s, offset, bytes, hash) of
    the domain's 4 KiB page reads, selected by device and/or process. Times count from the
    file's first request, so domains of one file share a clock. Writes are not reads; a
    later read of a written block carries the written content's digest itself. The most
    frequent digest of the file stands for the zero block (xpipe.hashing.ZERO_HASH).

    A trace has one digest per 4 KiB request (8 sectors: web-vm, mail) or one per 512-byte
    sector (1 sector: homes); per-sector reads make pages as :func:`sector_pages` says.
    """
    tr = read_fiu(path, skipped)
    keep = ~tr.write
    for key, value in select.items():
        keep &= (tr.device if key == "device" else tr.process) == value
    if not keep.any():
        what = ", ".join(f"{k} {v}" for k, v in select.items()) or "any device"
        raise InputError(path, None, f"expected read requests of {what}; found none")
    idx = np.flatnonzero(keep)
    size = int(tr.sectors[idx[0]])
    odd = idx[tr.sectors[idx] != size] if size in (1, PAGE_SECTORS) else idx[:1]
    if len(odd):
        raise InputError(path, f"line {int(tr.line[odd[0]])}",
                         f"expected every read of one size, {PAGE_SECTORS} sectors (a digest per 4 KiB "
                         f"page) or 1 (a digest per 512 B, the homes traces), as the first read of the "
                         f"domain (line {int(tr.line[idx[0]])}: {size} sectors); found "
                         f"{int(tr.sectors[odd[0]])}")
    values, counts = np.unique(tr.digest, return_counts=True)
    zero = values[np.argmax(counts)]
    t0 = tr.time_s.min()
    if size == 1:
        t, page, digest = sector_pages(tr.time_s[idx], tr.device[idx], tr.sector[idx], tr.digest[idx], zero)
        return t - t0, page * PAGE_SIZE, np.full(len(t), PAGE_SIZE, dtype=np.int64), digest
    digest = np.where(tr.digest[idx] == zero, ZERO_HASH, tr.digest[idx]).astype(np.uint64)
    return (tr.time_s[idx] - t0, tr.sector[idx] * SECTOR,
            np.full(len(idx), PAGE_SIZE, dtype=np.int64), digest)


def sector_pages(time_s: np.ndarray, device: np.ndarray, sector: np.ndarray, digest: np.ndarray,
                 zero: np.uint64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4 KiB page reads from per-sector reads (in trace order): (time_s, page, content).

    Consecutive reads of one device's sectors 8p, 8p+1, ..., 8p+7 are one read of page p,
    at the first one's time, whose content is that of its eight sector digests together
    (xxh3-64 of them in order; ZERO_HASH when all eight are the zero sector's, ``zero``).
    Any other run of consecutive sectors of one page is a read of part of the page: it
    costs a read of the page, whose whole content the trace does not tell, so it gets a
    content of its own that nothing else has.
    """
    dev = np.unique(device, return_inverse=True)[1]
    page, slot = sector // PAGE_SECTORS, sector % PAGE_SECTORS
    start = np.ones(len(sector), dtype=bool)
    start[1:] = (dev[1:] != dev[:-1]) | (page[1:] != page[:-1]) | (slot[1:] != slot[:-1] + 1)
    first = np.flatnonzero(start)
    length = np.diff(np.append(first, len(sector)))
    whole = (length == PAGE_SECTORS) & (slot[first] == 0)
    content = np.empty(len(first), dtype=np.uint64)
    for g, (at, n, full) in enumerate(zip(first, length, whole)):
        words = digest[at:at + n]
        if full and (words == zero).all():
            content[g] = ZERO_HASH
        else:  # a part of a page: tagged with where it was read, so it matches nothing
            tag = b"" if full else b"part %d %d %d" % (dev[at], page[at], at)
            content[g] = xxhash.xxh3_64_intdigest(words.astype("<u8").tobytes() + tag)
    return time_s[first], page[first], content
