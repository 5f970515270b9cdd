"""Kernel, initrd, root disk and kernel command line for each guest kind."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xpipe.capture.errors import CaptureError
from xpipe.capture.host import find_kernel
from xpipe.capture.initramfs import busybox_data_disk, busybox_initramfs
from xpipe.capture.rootfs import debian_image
from xpipe.capture.spec import DISK_NAMES

#: Common kernel options: serial console, free pages read as zeros, reboot -> exit on panic.
BASE_APPEND = "console=ttyS0 init_on_free=1 panic=1"


@dataclass(frozen=True)
class GuestImage:
    kind: str
    disk_name: str  # key under `disks` in the manifest
    kernel: Path
    initrd: Path
    root_disk: Path

    def append(self, workload: str) -> str:
        if self.kind == "debian":
            return f"{BASE_APPEND} root=/dev/vda ro rootfstype=ext4 init=/xpipe/run-{workload}"
        return f"{BASE_APPEND} rdinit=/xpipe/run-{workload}"


def guest_image(kind: str) -> GuestImage:
    """Build (or take from the cache) everything a guest of ``kind`` boots from."""
    if kind == "server":
        # Each release boots its own kernel from its own disk: one GuestImage cannot describe that.
        raise CaptureError(
            "server guests boot one image per release; capture them with "
            "`python -m xpipe.capture.servers capture --spec FILE -o DIR` (xpipe.capture.servers)"
        )
    kernel = find_kernel()
    if kind == "debian":
        return GuestImage(kind, DISK_NAMES[kind], kernel.vmlinuz, kernel.initrd, debian_image())
    return GuestImage(
        kind, DISK_NAMES[kind], kernel.vmlinuz, busybox_initramfs(kernel), busybox_data_disk(kernel)
    )
