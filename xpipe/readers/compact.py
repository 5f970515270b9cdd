"""xpipe's compact files: one little-endian u64 per page frame or disk block."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from xpipe.errors import InputError


def read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when its name ends in ``.gz``."""
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as f:
                return f.read()
        except (OSError, EOFError) as e:
            raise InputError(path, None, f"expected a gzip file ({e})") from None
    return path.read_bytes()


def read_u64(path: str | Path) -> np.ndarray:
    """One uint64 per 8 bytes of the file (page hashes, block hashes, kpageflags)."""
    path = Path(path)
    data = read_bytes(path)
    if len(data) % 8:
        raise InputError(
            path, f"offset {len(data) - len(data) % 8}",
            f"expected whole little-endian u64 words, found {len(data) % 8} trailing bytes",
        )
    return np.frombuffer(data, dtype="<u8").astype(np.uint64)


def write_u64(path: str | Path, values: np.ndarray) -> None:
    path = Path(path)
    data = np.asarray(values, dtype="<u8").tobytes()
    if path.suffix == ".gz":
        with gzip.open(path, "wb", compresslevel=6) as f:
            f.write(data)
    else:
        path.write_bytes(data)
