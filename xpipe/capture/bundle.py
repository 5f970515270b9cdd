"""Writing a capture bundle (docs/capture-bundle.md): compact files and manifest.yaml."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from xpipe.capture.errors import CaptureError
from xpipe.readers.compact import write_bytes
from xpipe.readers.memdump import read_pmemsave

log = logging.getLogger(__name__)


def write_compact(path: Path, data: bytes, compress: bool) -> Path:
    """Write ``data`` to ``path``, or to ``path``.gz gzipped when compressing; returns the path written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if compress:
        path = path.with_name(path.name + ".gz")
    write_bytes(path, data)
    return path


def dump_hashes(raw: Path, frames: int) -> np.ndarray:
    """Page hashes of a guest's pmemsave dump, which must hold exactly one page per guest frame."""
    _, hashes = read_pmemsave(raw)
    if len(hashes) != frames:
        raise CaptureError(f"{raw}: expected {frames} frames, found {len(hashes)}")
    return hashes


def write_manifest(out: Path, manifest: dict[str, Any]) -> Path:
    path = out / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False, width=100))
    return path


def relative(path: Path, out: Path) -> str:
    return path.relative_to(out).as_posix()
