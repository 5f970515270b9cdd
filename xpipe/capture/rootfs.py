"""The Debian guest image: debootstrap (minbase) + workload scripts, packed with mkfs.ext4 -d.

Both steps are cached under the cache folder: the debootstrap tree by its package
list, the image by package list + scripts, so editing a workload only repacks.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from pathlib import Path

from xpipe.capture.errors import CaptureError
from xpipe.capture.ext4 import pack_ext4
from xpipe.capture.host import cache_dir, require_tool
from xpipe.capture.workloads import COMMON_SH, DEBIAN_WORKLOADS, debian_run_script

log = logging.getLogger(__name__)

SUITE = "bookworm"
#: Packages on top of minbase: the workloads' tools (gcc builds libstb-dev's real source).
PACKAGES = ("python3", "sqlite3", "xz-utils", "gcc", "libc6-dev", "libstb-dev")
#: Free space left in the image beyond its files (the guest mounts it read-only).
SLACK_BYTES = 64 << 20
ROOT_UUID = "8f1c3a3e-5b1e-4a7c-9a55-2f4c1f0b7e01"
ROOT_HASH_SEED = "3c7e0f5a-1d2b-4c3e-8f9a-0b1c2d3e4f50"


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode())
        h.update(b"\0")
    return h.hexdigest()[:12]


def _tree(root: Path) -> Path:
    """debootstrap tree, built once per package list."""
    return debootstrap_tree(root / f"debootstrap-{SUITE}-{_digest(SUITE, *PACKAGES)}", SUITE, PACKAGES,
                            "the Debian guest image")


def debootstrap_tree(tree: Path, suite: str, packages, what: str) -> Path:
    """``tree``: a minbase debootstrap of ``suite`` with ``packages``, unless one is complete
    there already (the caller names the tree after its package list)."""
    if (tree / ".complete").exists():
        return tree
    debootstrap = require_tool("debootstrap")
    if os.geteuid() != 0:
        raise CaptureError(f"building {what} needs root (debootstrap)")
    if tree.exists():
        shutil.rmtree(tree)
    log.info("debootstrap %s into %s (a few minutes, once)", suite, tree)
    cmd = [debootstrap, "--variant=minbase", f"--include={','.join(packages)}", suite, str(tree)]
    mirror = os.environ.get("XPIPE_DEBIAN_MIRROR")
    if mirror:
        cmd.append(mirror)
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise CaptureError(f"debootstrap {suite} failed (exit {proc.returncode}):\n{tail}")
    # Package caches are not part of the guest's working set; keep the image lean.
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for f in (tree / sub).glob("*"):
            if f.is_file():
                f.unlink()
    (tree / ".complete").touch()
    return tree


def _install_scripts(tree: Path) -> None:
    xdir = tree / "xpipe"
    if xdir.exists():
        shutil.rmtree(xdir)
    xdir.mkdir()
    (xdir / "common.sh").write_text(COMMON_SH)
    for name, body in DEBIAN_WORKLOADS.items():
        for path, text in (
            (xdir / f"work-{name}", "#!/bin/sh\n" + body),
            (xdir / f"run-{name}", debian_run_script(name)),
        ):
            path.write_text(text)
            path.chmod(0o755)


def _du_bytes(tree: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(tree):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_size
            except OSError:
                pass
    return total


def debian_image(root: Path | None = None) -> Path:
    """Path of the cached ext4 image of the Debian workload guest; builds it if missing."""
    root = root or cache_dir()
    scripts = COMMON_SH + "".join(f"{k}\0{v}" for k, v in sorted(DEBIAN_WORKLOADS.items()))
    image = root / f"{SUITE}-{_digest(SUITE, *PACKAGES, scripts, debian_run_script('x'), 'ext4 -b 4096')}.img"
    if image.exists():
        return image
    tree = _tree(root)
    _install_scripts(tree)
    # Whole MiB so the image is a whole number of 4 KiB blocks; inodes have their own overhead.
    size_mib = (int(_du_bytes(tree) * 1.25) + SLACK_BYTES) // (1 << 20) + 1
    tmp = image.with_suffix(".tmp")
    log.info("packing %s (%d MiB) with mkfs.ext4 -d", image.name, size_mib)
    pack_ext4(tree, tmp, size_mib, ROOT_UUID, ROOT_HASH_SEED, label="xpipe-root")
    tmp.rename(image)
    for stale in root.glob(f"{SUITE}-*.img"):  # images of older scripts: 0.5 GB each
        if stale != image:
            stale.unlink()
    return image


if __name__ == "__main__":  # build the image ahead of a capture
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(debian_image())
