"""Reading xpipe's compact files: one little-endian u64 per page frame or disk block.

xpipe.bundle writes them.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from xpipe.errors import InputError

#: /proc/kpageflags defines bits 0-26 and, for kernel hackers, 32-41 (KPF_ARCH_2);
#: bits 48-63 are never set. A page hash has one of them set with odds 1 - 2**-16,
#: so a page-hash file given as kpageflags fails here on its first word.
KPF_UNUSED_BITS = np.uint64(0xFFFF << 48)


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when its name ends in ``.gz``.

    A damaged gzip file (bad header, corrupt deflate stream, bad CRC, cut short)
    is an InputError naming the file, whatever layer of gzip/zlib notices it.
    """
    path = Path(path)
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as f:
                return f.read()
        except (gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise InputError(path, None, f"expected a whole gzip file ({type(e).__name__}: {e})") from None
    return path.read_bytes()


def read_u64(path: str | Path) -> np.ndarray:
    """One uint64 per 8 bytes of the file (page hashes, block hashes, kpageflags)."""
    path = Path(path)
    return _u64(path, read_bytes(path))


def _u64(path: Path, data: bytes, start: int = 0) -> np.ndarray:
    """``data`` (which starts at byte ``start`` of ``path``) as u64 words."""
    if len(data) % 8:
        raise InputError(
            path, f"offset {start + len(data) - len(data) % 8}",
            f"expected whole little-endian u64 words, found {len(data) % 8} trailing bytes",
        )
    return np.frombuffer(data, dtype="<u8").astype(np.uint64)


def read_page_hashes(path: Path, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """xpipe's compact page-hash file: one u64 per frame, frame 0 first (nothing to hash), or,
    after a memory map header (xpipe.bundle.PAGES_MAGIC), one per frame of its ranges."""
    from xpipe.bundle import PAGES_HEADER, PAGES_MAGIC, PAGES_VERSION

    path = Path(path)
    data = read_bytes(path)
    if not data.startswith(PAGES_MAGIC):
        return np.arange(len(data) // 8, dtype=np.int64), _u64(path, data)
    if len(data) < PAGES_HEADER.size:
        raise InputError(path, f"offset {len(data)}", f"expected a {PAGES_HEADER.size}-byte memory map header, "
                                                      f"the file ends after {len(data)} bytes")
    _, version, n = PAGES_HEADER.unpack_from(data)
    if version != PAGES_VERSION:
        raise InputError(path, "offset 8", f"expected pages file version {PAGES_VERSION}, found {version}")
    at = PAGES_HEADER.size + 16 * n
    if n == 0 or len(data) < at:
        raise InputError(path, "offset 12", f"expected one or more memory ranges that fit the file, found {n}")
    ranges = np.frombuffer(data, dtype="<u8", count=2 * n, offset=PAGES_HEADER.size).astype(np.int64)
    first, frames = ranges[0::2], ranges[1::2]
    ends = first + frames
    bad = np.flatnonzero((frames <= 0) | (first < 0) | np.concatenate([[False], first[1:] <= ends[:-1]]))
    if len(bad):
        i = int(bad[0])
        raise InputError(path, f"offset {PAGES_HEADER.size + 16 * i}",
                         f"expected memory ranges of one or more frames, increasing and apart; range {i} is "
                         f"{int(frames[i])} frames from {int(first[i]):#x}")
    hashes = _u64(path, data[at:], at)
    if len(hashes) != int(frames.sum()):
        raise InputError(path, f"offset {at}", f"expected {int(frames.sum())} page hashes (the memory map's "
                                               f"frames), found {len(hashes)}")
    gfn = np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in zip(first, ends)])
    return gfn, hashes


def kpageflags_words(gfn: np.ndarray) -> int:
    """How many kpageflags words a snapshot of frames ``gfn`` needs: one per frame
    number from 0 to the highest (/proc/kpageflags is indexed by frame number, so
    an ELF core's holes have words too)."""
    return int(gfn.max()) + 1 if len(gfn) else 0


def check_kpageflags(path: str | Path, kpageflags: np.ndarray, gfn: np.ndarray) -> None:
    """InputError unless ``kpageflags`` (read from ``path``) holds exactly one
    kpageflags word per frame of the snapshot of frames ``gfn``.

    A shorter or longer file is refused, not padded: flags of another guest or
    another snapshot, or a cut copy, would otherwise type pages silently. A guest
    whose max_pfn stops short of its RAM has its missing frames stored as
    KPF_NOPAGE, as xpipe capture does (docs/capture-bundle.md).
    """
    want = kpageflags_words(gfn)
    if len(kpageflags) != want:
        raise InputError(
            path, f"offset {min(len(kpageflags), want) * 8}",
            f"expected one u64 kpageflags word per guest frame 0..{want - 1} ({want} words, "
            f"{want * 8} bytes), found {len(kpageflags)} words; frames past the guest's max_pfn "
            "are stored as KPF_NOPAGE (bit 20)",
        )
    bad = np.flatnonzero(kpageflags & KPF_UNUSED_BITS)
    if len(bad):
        raise InputError(
            path, f"offset {int(bad[0]) * 8}",
            f"expected kpageflags words (bits 48-63 unused), found {int(kpageflags[bad[0]]):#018x} "
            "(a page-hash file?)",
        )


def read_kpageflags(path: str | Path, gfn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flags, known) of each frame in ``gfn`` from a /proc/kpageflags copy, checked by
    check_kpageflags: one word per frame number up to the snapshot's last."""
    path = Path(path)
    kpf = read_u64(path)
    check_kpageflags(path, kpf, gfn)
    return align_kpageflags(gfn, kpf)


def align_kpageflags(gfn: np.ndarray, kpageflags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flags, known) of each frame in ``gfn`` from kpageflags indexed by frame number.

    Frames beyond the array have no flags (known False, flags 0). Readers check
    the array first (check_kpageflags), so from a file every frame is known;
    this stays total for callers that build arrays themselves.
    """
    known = gfn < len(kpageflags)
    if not len(kpageflags):
        return np.zeros(len(gfn), np.uint64), known
    flags = kpageflags[np.minimum(gfn, len(kpageflags) - 1)].astype(np.uint64, copy=False)
    flags[~known] = 0
    return flags, known
