"""Reading page-delta files (`delta` snapshots, docs/capture-bundle.md): the frames whose
hash changed since the domain's previous snapshot, and their new hashes.

A delta alone is not a snapshot: :func:`read_delta_snapshot` applies it to the
previous snapshot's pages, and stage 1 (xpipe.normalise) passes that along a
domain's snapshots in order. xpipe.bundle writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpipe.bundle import (
    DELTA_ENTRY,
    DELTA_HEADER,
    DELTA_MAGIC,
    DELTA_MAX_FRAMES,
    DELTA_VERSION,
    words_crc,
)
from xpipe.errors import InputError
from xpipe.readers.compact import read_bytes

#: Where each header field starts (bytes): what the errors name.
_AT_VERSION, _AT_BASE_CRC, _AT_FRAMES, _AT_CHANGED, _AT_CRC, _AT_ZERO = 8, 12, 16, 24, 32, 36


@dataclass(frozen=True)
class PageDelta:
    frames: int  # frames of the snapshot it gives (and of the one it starts from)
    base_crc: int  # CRC-32 of the previous snapshot's u64 LE page hashes
    crc: int  # CRC-32 of the snapshot it gives
    gfn: np.ndarray  # int64: the changed frames' indexes in frame order (their numbers from frame 0), increasing
    hashes: np.ndarray  # uint64: their new hashes


def read_delta(path: str | Path) -> PageDelta:
    """A page-delta file, checked whole: header, lengths, frame numbers (not yet the CRCs,
    which need the previous snapshot). Every fault is an InputError at its byte offset."""
    path = Path(path)
    data = read_bytes(path)
    if data[: len(DELTA_MAGIC)] != DELTA_MAGIC:
        raise InputError(path, "offset 0", f"expected a page-delta file (magic {DELTA_MAGIC!r}), "
                                           f"found {data[:len(DELTA_MAGIC)]!r}")
    if len(data) < DELTA_HEADER.size:
        raise InputError(path, f"offset {len(data)}", f"expected a {DELTA_HEADER.size}-byte page-delta header, "
                                                      f"the file ends after {len(data)} bytes")
    _, version, base_crc, frames, changed, crc, zero = DELTA_HEADER.unpack_from(data)
    if version != DELTA_VERSION:
        raise InputError(path, f"offset {_AT_VERSION}", f"expected page-delta version {DELTA_VERSION}, "
                                                        f"found {version}")
    if zero:
        raise InputError(path, f"offset {_AT_ZERO}", f"expected a zero word, found {zero:#x}")
    if frames > DELTA_MAX_FRAMES:
        raise InputError(path, f"offset {_AT_FRAMES}", f"expected at most {DELTA_MAX_FRAMES} frames "
                                                       f"(u32 frame numbers), found {frames}")
    if changed > frames:
        raise InputError(path, f"offset {_AT_CHANGED}", f"expected at most the {frames} frames to have "
                                                        f"changed, found {changed}")
    # Python integers: a huge declared count cannot wrap, and nothing is allocated from it.
    want = DELTA_HEADER.size + DELTA_ENTRY * changed
    if len(data) != want:
        raise InputError(path, f"offset {min(len(data), want)}",
                         f"expected {want} bytes ({DELTA_HEADER.size}-byte header + {DELTA_ENTRY} x {changed} "
                         f"changed frames), found {len(data)}")
    at_hashes = DELTA_HEADER.size + 4 * changed
    gfn = np.frombuffer(data, dtype="<u4", count=changed, offset=DELTA_HEADER.size).astype(np.int64)
    hashes = np.frombuffer(data, dtype="<u8", count=changed, offset=at_hashes).astype(np.uint64)
    out = np.flatnonzero(gfn >= frames)
    if len(out):
        i = int(out[0])
        raise InputError(path, f"offset {DELTA_HEADER.size + 4 * i}",
                         f"expected a frame number below {frames}, found {int(gfn[i])}")
    down = np.flatnonzero(np.diff(gfn) <= 0)
    if len(down):
        i = int(down[0]) + 1
        raise InputError(path, f"offset {DELTA_HEADER.size + 4 * i}",
                         f"expected frame numbers in strictly increasing order, found {int(gfn[i])} "
                         f"after {int(gfn[i - 1])}")
    return PageDelta(frames, base_crc, crc, gfn, hashes)


def apply_delta(path: str | Path, delta: PageDelta,
                previous: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """(gfn, hash) of the snapshot ``delta`` (read from ``path``) gives from ``previous``, the
    domain's previous snapshot; InputError unless it is the snapshot the delta was made from."""
    if previous is None:
        raise InputError(path, "offset 0", "expected a full snapshot before this delta: a domain's first "
                                           "snapshot must be a full one (pages), not a delta")
    gfn, hashes = previous
    if len(hashes) != delta.frames:
        raise InputError(path, f"offset {_AT_FRAMES}", f"expected the previous snapshot's frame count "
                                                       f"{len(hashes)}, found {delta.frames}")
    if (np.diff(gfn) <= 0).any():  # the delta names frames by their index in frame order
        raise InputError(path, f"offset {_AT_FRAMES}", "expected a previous snapshot of increasing frame "
                                                       "numbers, one hash each")
    base = words_crc(hashes)
    if base != delta.base_crc:
        raise InputError(path, f"offset {_AT_BASE_CRC}",
                         f"expected the CRC-32 of the previous snapshot's page hashes, {base:#010x}, found "
                         f"{delta.base_crc:#010x} (a delta of another snapshot, or snapshots out of order?)")
    now = hashes.astype(np.uint64, copy=True)
    now[delta.gfn] = delta.hashes
    crc = words_crc(now)
    if crc != delta.crc:
        raise InputError(path, f"offset {_AT_CRC}", f"expected the CRC-32 of the snapshot the delta gives, "
                                                    f"{crc:#010x}, found {delta.crc:#010x} (a damaged file)")
    return gfn, now


def read_delta_snapshot(path: Path, previous: tuple[np.ndarray, np.ndarray] | None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """A `delta` snapshot's (gfn, hash): the previous snapshot's pages with the file's changes."""
    return apply_delta(path, read_delta(path), previous)
