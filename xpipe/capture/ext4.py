"""Pack a folder into an ext4 image with `mkfs.ext4 -d` (no mount, no root needed for this step)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from xpipe.capture.errors import CaptureError
from xpipe.capture.host import require_tool


def pack_ext4(src: Path, image: Path, size_mib: int, uuid: str, hash_seed: str, label: str = "") -> None:
    """Write ``image`` (``size_mib`` MiB) holding the files of ``src``.

    The UUID and directory hash seed are fixed instead of random, and the file system's
    own timestamps are pinned; file timestamps come from ``src``.
    """
    # 4 KiB file-system blocks, so every file block is a 4 KiB-aligned block of the
    # image: a page-cache page then equals an image block (mke2fs picks 1 KiB for small images).
    cmd = [require_tool("mkfs.ext4"), "-q", "-F", "-b", "4096", "-U", uuid, "-E", f"hash_seed={hash_seed}"]
    if label:
        cmd += ["-L", label]
    cmd += ["-d", str(src), str(image), f"{size_mib}M"]
    env = dict(os.environ, E2FSPROGS_FAKE_TIME="1700000000")
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise CaptureError(f"mkfs.ext4 -d {src} {image} failed: {proc.stderr.strip()}")
