"""Writing a capture bundle (docs/capture-bundle.md): compact files and manifest.yaml."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from xpipe.hashing import PAGE_SIZE, hash_file

log = logging.getLogger(__name__)

FORMAT = "xpipe-capture/1"


def write_compact(path: Path, data: bytes, compress: bool) -> Path:
    """Write ``data`` to ``path`` (+ ``.gz`` when compressing; fixed mtime so reruns are byte-equal)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data, compresslevel=9, mtime=0)
    path.write_bytes(data)
    return path


def page_hashes(path: Path, frames: int | None = None) -> np.ndarray:
    """xxh3-64 of each 4 KiB page of a file (a pmemsave dump or a disk image).

    ``frames`` checks the length: a dump must hold exactly one page per guest frame.
    """
    size = path.stat().st_size
    if size % PAGE_SIZE:
        raise ValueError(f"{path}: {size} bytes is not a whole number of {PAGE_SIZE}-byte pages")
    if frames is not None and size != frames * PAGE_SIZE:
        raise ValueError(f"{path}: expected {frames} frames ({frames * PAGE_SIZE} bytes), found {size} bytes")
    return hash_file(path, [(0, size // PAGE_SIZE)])


def u64_bytes(values: np.ndarray) -> bytes:
    """Little-endian u64 bytes, as the bundle format stores hashes and flags."""
    return np.ascontiguousarray(values, dtype="<u8").tobytes()


def write_manifest(out: Path, manifest: dict[str, Any]) -> Path:
    path = out / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False, width=100))
    return path


def relative(path: Path, out: Path) -> str:
    return path.relative_to(out).as_posix()
