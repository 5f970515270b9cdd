"""The capture bundle format (docs/capture-bundle.md): its constants, its writers,
and the block hashes of a disk image (written by a capture, computed by stage 1
for a bundle that keeps the image instead).

Captures (xpipe.capture) and the synthetic generator write bundles through
this module; xpipe.readers reads them. It sits below both, so it imports
neither.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from xpipe.errors import InputError
from xpipe.hashing import PAGE_SIZE, hash_file

FORMAT = "xpipe-capture/1"
#: The manifest's name in the bundle's folder.
MANIFEST = "manifest.yaml"

#: A page-delta file (a `delta` snapshot, docs/capture-bundle.md): the frames that changed
#: since the domain's previous snapshot. Header, little-endian: magic, version, CRC-32 of the
#: previous snapshot's page-hash words, frame count, changed count, CRC-32 of this snapshot's
#: page-hash words, a zero word; then the changed frame numbers (u32, strictly increasing),
#: then their new hashes (u64).
DELTA_MAGIC = b"XPDELTA\0"
DELTA_VERSION = 1
DELTA_HEADER = struct.Struct("<8sIIQQII")
#: Bytes per changed frame: its u32 frame number and its u64 hash.
DELTA_ENTRY = 12
#: Frame numbers are u32: at most 2**32 frames (16 TiB of guest memory).
DELTA_MAX_FRAMES = 1 << 32

#: A `pages` file of a guest whose RAM is not frames 0..N-1 (a PC guest above 3.5 GiB has
#: RAM above 4 GiB) starts with its memory map: magic, version, the number of ranges R, then
#: R (first frame, frames) pairs (u64, increasing, apart); then the hashes as in any `pages`
#: file, frame order. A file of frames 0..N-1 has no header.
PAGES_MAGIC = b"XPPAGES\0"
PAGES_VERSION = 1
PAGES_HEADER = struct.Struct("<8sII")


def u64_bytes(values: np.ndarray) -> bytes:
    """Little-endian u64 words: the layout of every compact file."""
    return np.ascontiguousarray(values, dtype="<u8").tobytes()


def encode(data: bytes, gz: bool) -> bytes:
    """``data`` as a file stores it: gzipped when ``gz`` (fixed mtime: reruns are byte-equal)."""
    return gzip.compress(data, compresslevel=6, mtime=0) if gz else data


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data``, gzipped when the name ends in ``.gz``."""
    path = Path(path)
    path.write_bytes(encode(data, path.suffix == ".gz"))


def write_u64(path: str | Path, values: np.ndarray) -> None:
    write_bytes(path, u64_bytes(values))


def words_crc(hashes: np.ndarray) -> int:
    """CRC-32 of page hashes as a compact file stores them (u64 LE words): a delta's check of
    the snapshot it starts from and of the one it gives."""
    return zlib.crc32(u64_bytes(hashes))


def delta_bytes(previous: np.ndarray, current: np.ndarray) -> bytes:
    """A page-delta file taking page hashes ``previous`` (of the same frames, in frame order)
    to ``current``; it names the changed frames by their index in that order."""
    previous = np.asarray(previous, dtype=np.uint64)
    current = np.asarray(current, dtype=np.uint64)
    if len(previous) != len(current):
        raise ValueError(f"a delta needs snapshots of the same frames, got {len(previous)} and {len(current)}")
    if len(current) > DELTA_MAX_FRAMES:
        raise ValueError(f"a delta holds at most {DELTA_MAX_FRAMES} frames, got {len(current)}")
    changed = np.flatnonzero(previous != current)
    header = DELTA_HEADER.pack(DELTA_MAGIC, DELTA_VERSION, words_crc(previous), len(current), len(changed),
                               words_crc(current), 0)
    return header + changed.astype("<u4").tobytes() + u64_bytes(current[changed])


def write_delta(path: Path, previous: np.ndarray, current: np.ndarray, compress: bool) -> Path:
    """Write the page-delta file from ``previous`` to ``current`` (write_compact: ``.gz`` added when
    compressing); returns the path written."""
    return write_compact(path, delta_bytes(previous, current), compress)


def frame_ranges(gfn: np.ndarray) -> list[tuple[int, int]]:
    """(first frame, frames) of each run of consecutive frame numbers in increasing ``gfn``."""
    gfn = np.asarray(gfn, dtype=np.int64)
    if not len(gfn):
        return []
    breaks = np.flatnonzero(np.diff(gfn) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(gfn)]])
    return [(int(gfn[a]), int(b - a)) for a, b in zip(starts, ends)]


def pages_bytes(hashes: np.ndarray, gfn: np.ndarray | None = None) -> bytes:
    """A `pages` file of ``hashes`` of frames ``gfn`` (increasing; None: 0..N-1), with the
    memory map header only when the frames are not 0..N-1."""
    ranges = frame_ranges(gfn) if gfn is not None else []
    if len(ranges) <= 1 and (not ranges or ranges[0][0] == 0):
        return u64_bytes(hashes)
    if (np.diff(np.asarray(gfn, dtype=np.int64)) <= 0).any():
        raise ValueError("a pages file needs increasing frame numbers")
    header = PAGES_HEADER.pack(PAGES_MAGIC, PAGES_VERSION, len(ranges))
    return header + u64_bytes(np.array(ranges, dtype=np.uint64).ravel()) + u64_bytes(hashes)


def write_pages(path: Path, hashes: np.ndarray, previous: np.ndarray | None, compress: bool,
                gfn: np.ndarray | None = None) -> tuple[str, Path]:
    """A snapshot's page hashes (of frames ``gfn``, None for 0..N-1) as a `pages` file ``path``
    (e.g. s3.xxh) or, given the domain's previous snapshot's hashes ``previous`` (of the same
    frames) and when it is the smaller file written, as a `delta` file (s3.xxhd); ``.gz``
    added when compressing. Returns (manifest kind, path)."""
    full = pages_bytes(hashes, gfn)
    if previous is not None:
        delta = delta_bytes(previous, hashes)
        if len(encode(delta, compress)) < len(encode(full, compress)):
            return "delta", write_compact(path.with_name(path.name + "d"), delta, compress)
    return "pages", write_compact(path, full, compress)


def write_compact(path: Path, data: bytes, compress: bool) -> Path:
    """Write ``data`` to ``path``, or to ``path``.gz gzipped when compressing; returns the path written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
    write_bytes(path, data)
    return path


def relative(path: Path, out: Path) -> str:
    """How the manifest of bundle folder ``out`` names ``path``."""
    return path.relative_to(out).as_posix()


def write_manifest(
    out: Path, *, synthetic: bool, description: str, disks: dict[str, Any], domains: list[dict[str, Any]],
    hash_kind: str = "xxh3-64",
) -> Path:
    """Write ``out``/manifest.yaml, with the format and page size filled in; returns its path."""
    manifest = {
        "format": FORMAT,
        "synthetic": synthetic,
        "description": description,
        "page_size": PAGE_SIZE,
        "hash_kind": hash_kind,
        "disks": disks,
        "domains": domains,
    }
    path = out / MANIFEST
    path.write_text(yaml.safe_dump(manifest, sort_keys=False, width=100))
    return path


def image_blocks(image: Path) -> int:
    """How many 4 KiB blocks a raw disk image holds (from its size: nothing is hashed)."""
    size = image.stat().st_size
    if size % PAGE_SIZE:
        raise InputError(image, f"offset {size - size % PAGE_SIZE}",
                         f"expected a disk image of whole {PAGE_SIZE}-byte blocks")
    return size // PAGE_SIZE


def disk_block_hashes(image: Path, threads: int = 0) -> np.ndarray:
    """One hash per 4 KiB block of a raw disk image, in block order: a ``block_hashes`` file's content.
    ``threads``: 0 for one per core."""
    return hash_file(image, [(0, image_blocks(image))], threads)
