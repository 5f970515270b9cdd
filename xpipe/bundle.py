"""The capture bundle format (docs/capture-bundle.md): its constants, its writers,
and the block hashes of a disk image (written by a capture, computed by stage 1
for a bundle that keeps the image instead).

Captures (xpipe.capture) and the synthetic generator write bundles through
this module; xpipe.readers reads them. It sits below both, so it imports
neither.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from xpipe.errors import InputError
from xpipe.hashing import PAGE_SIZE, hash_file

FORMAT = "xpipe-capture/1"
#: The manifest's name in the bundle's folder.
MANIFEST = "manifest.yaml"


def u64_bytes(values: np.ndarray) -> bytes:
    """Little-endian u64 words: the layout of every compact file."""
    return np.ascontiguousarray(values, dtype="<u8").tobytes()


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data``, gzipped when the name ends in ``.gz`` (fixed mtime: reruns are byte-equal)."""
    path = Path(path)
    if path.suffix == ".gz":
        data = gzip.compress(data, compresslevel=6, mtime=0)
    path.write_bytes(data)


def write_u64(path: str | Path, values: np.ndarray) -> None:
    write_bytes(path, u64_bytes(values))


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
