"""The busybox initramfs guest: busybox-static + the kernel's virtio/ext4 modules + scripts.

It boots in seconds under TCG, which is what the tests and the KSM check need. Its
root disk is a small ext4 image of files copied from the host's module tree, so its
reads and page cache are real file-system traffic.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

from xpipe.capture.errors import CaptureError
from xpipe.capture.ext4 import pack_ext4
from xpipe.capture.host import INSTALL_HINT, GuestKernel, cache_dir, require_tool
from xpipe.capture.workloads import BUSYBOX_WORKLOADS, COMMON_SH, busybox_run_script

log = logging.getLogger(__name__)

#: Modules to load, dependencies first (virtio disk, then ext4 to mount it).
MODULE_NAMES = (
    "virtio",
    "virtio_ring",
    "virtio_pci_legacy_dev",
    "virtio_pci_modern_dev",
    "virtio_pci",
    "virtio_blk",
    "crc16",
    "mbcache",
    "jbd2",
    "crc32c_generic",
    "libcrc32c",
    "ext4",
)
#: Size of the busybox guests' data disk.
DATA_DISK_MIB = 48
DATA_UUID = "5d0c5b8e-2f61-4a0f-8e4e-7b1d7c6f9a10"
DATA_HASH_SEED = "0f3e6a1c-9b2d-4e8f-a7c5-d1e2f3a4b5c6"


def _newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio archive in the kernel's `newc` format from (path, mode, data) entries."""
    out = bytearray()

    def add(name: str, mode: int, data: bytes, ino: int) -> None:
        nb = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(nb), 0]
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields) + nb)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(data)
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data) in enumerate(entries, start=1):
        add(name, mode, data, ino)
    add("TRAILER!!!", 0, b"", 0)
    return bytes(out)


def _module_files(kernel: GuestKernel) -> list[Path]:
    """The .ko files of MODULE_NAMES and their dependencies, in load order (built-ins skipped)."""
    deps: dict[str, list[str]] = {}
    path_of: dict[str, str] = {}
    for line in (kernel.modules / "modules.dep").read_text().splitlines():
        rel, _, rest = line.partition(":")
        name = Path(rel).name.split(".ko")[0].replace("-", "_")
        path_of[name] = rel
        deps[name] = [Path(d).name.split(".ko")[0].replace("-", "_") for d in rest.split()]
    order: list[str] = []

    def visit(name: str) -> None:
        if name in order or name not in path_of:
            return
        for d in deps[name]:
            visit(d)
        order.append(name)

    for n in MODULE_NAMES:
        visit(n)
    files = [kernel.modules / path_of[n] for n in order]
    for f in files:
        if not f.name.endswith(".ko"):
            raise CaptureError(f"{f}: compressed modules are not supported by the busybox guest")
    return files


def busybox_initramfs(kernel: GuestKernel, root: Path | None = None) -> Path:
    """Cached initramfs (uncompressed newc cpio) holding busybox, modules and run scripts."""
    busybox = Path("/bin/busybox")
    if not busybox.is_file():
        raise CaptureError(f"/bin/busybox not found; {INSTALL_HINT}")
    modules = _module_files(kernel)
    entries: list[tuple[str, int, bytes]] = []
    for d in ("bin", "dev", "proc", "sys", "tmp", "mnt", "xpipe", "lib", "lib/modules"):
        entries.append((d, 0o040755, b""))
    entries.append(("bin/busybox", 0o100755, busybox.read_bytes()))
    entries.append(("xpipe/common.sh", 0o100644, COMMON_SH.encode()))
    for m in modules:
        entries.append((f"lib/modules/{m.name}", 0o100644, m.read_bytes()))
    for name, body in BUSYBOX_WORKLOADS.items():
        entries.append((f"xpipe/work-{name}", 0o100755, body.encode()))
        entries.append(
            (f"xpipe/run-{name}", 0o100755, busybox_run_script(name, [m.name for m in modules]).encode())
        )
    blob = _newc(entries)
    root = root or cache_dir()
    path = root / f"busybox-initramfs-{kernel.version}-{hashlib.sha256(blob).hexdigest()[:12]}.cpio"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(blob)
        tmp.rename(path)
        for stale in root.glob(f"busybox-initramfs-{kernel.version}-*.cpio"):  # older scripts
            if stale != path:
                stale.unlink()
    return path


def busybox_data_disk(kernel: GuestKernel, root: Path | None = None) -> Path:
    """Cached ext4 image with a `data/` folder of files the guests read and copy."""
    root = root or cache_dir()
    image = root / f"busybox-data-{kernel.version}-b4096.img"  # 4 KiB ext4 blocks (see ext4.py)
    if image.exists():
        return image
    require_tool("mkfs.ext4")  # fail before copying files
    src = image.with_suffix(".d")
    if src.exists():
        shutil.rmtree(src)
    data = src / "data"
    data.mkdir(parents=True)
    # Real files (kernel modules) up to ~1/2 of the disk, in a stable order.
    budget = DATA_DISK_MIB << 19
    for f in sorted((kernel.modules / "kernel" / "fs").rglob("*.ko")):
        size = f.stat().st_size
        if size > budget:
            break
        shutil.copyfile(f, data / f.name)
        budget -= size
    tmp = image.with_suffix(".tmp")
    try:
        pack_ext4(src, tmp, DATA_DISK_MIB, DATA_UUID, DATA_HASH_SEED)
    finally:
        shutil.rmtree(src)
    tmp.rename(image)
    return image
