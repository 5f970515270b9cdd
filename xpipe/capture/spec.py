"""What to capture: guests, workloads, snapshot times; and the named presets."""

from __future__ import annotations

import re
from dataclasses import dataclass

from xpipe.capture.errors import CaptureError
from xpipe.capture.workloads import BUSYBOX_WORKLOADS, DEBIAN_WORKLOADS

GUEST_KINDS = ("debian", "busybox")
#: How a snapshot's memory lands in the bundle: page hashes of a pmemsave dump (compact
#: `pages` files), or QEMU's own kdump-compressed dump kept whole (`kdump` snapshots).
SNAPSHOT_FORMATS = ("pages", "kdump-zlib")
#: The disk each guest kind reads, by its name under `disks` in the manifest (debian: rootfs.SUITE).
DISK_NAMES = {"debian": "bookworm", "busybox": "busybox-data"}
_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class DomainSpec:
    id: str
    workload: str
    memory_mib: int


@dataclass
class CaptureSpec:
    guest: str
    domains: list[DomainSpec]
    times_s: list[float]
    batch_size: int = 2
    boot_timeout_s: float = 180.0
    description: str = ""
    snapshot_format: str = "pages"  # one of SNAPSHOT_FORMATS

    def validate(self) -> None:
        if self.guest not in GUEST_KINDS:
            raise CaptureError(f"unknown guest kind {self.guest!r}; expected one of {', '.join(GUEST_KINDS)}")
        workloads = DEBIAN_WORKLOADS if self.guest == "debian" else BUSYBOX_WORKLOADS
        if not self.domains:
            raise CaptureError("no domains to capture")
        seen = set()
        for d in self.domains:
            if not _ID.match(d.id):
                raise CaptureError(f"domain id {d.id!r} must match [A-Za-z0-9_.-]+")
            if d.id in seen:
                raise CaptureError(f"domain id {d.id!r} appears twice")
            seen.add(d.id)
            if d.workload not in workloads:
                raise CaptureError(
                    f"domain {d.id}: unknown {self.guest} workload {d.workload!r}; "
                    f"expected one of {', '.join(sorted(workloads))}"
                )
            # Up to 2 GiB all RAM sits below the PC's PCI hole, so pmemsave of 0..memory is all of it.
            if not 64 <= d.memory_mib <= 2048:
                raise CaptureError(f"domain {d.id}: memory {d.memory_mib} MiB; expected 64 to 2048 MiB")
        if (
            not self.times_s
            or any(t <= 0 for t in self.times_s)
            or sorted(set(self.times_s)) != list(self.times_s)
        ):
            raise CaptureError(f"snapshot times must be positive and strictly increasing, got {self.times_s}")
        if self.batch_size < 1:
            raise CaptureError("batch size must be at least 1")
        if self.snapshot_format not in SNAPSHOT_FORMATS:
            raise CaptureError(f"unknown snapshot format {self.snapshot_format!r}; expected one of "
                               f"{', '.join(SNAPSHOT_FORMATS)}")


def _domains(pairs: list[tuple[str, str]], memory_mib: int) -> list[DomainSpec]:
    return [DomainSpec(i, w, memory_mib) for i, w in pairs]


def preset(name: str) -> CaptureSpec:
    """A named capture. ``default`` makes data/default; ``busybox`` is the fast one tests use."""
    if name == "default":
        return CaptureSpec(
            guest="debian",
            domains=_domains(
                [
                    ("sqlite-1", "sqlite"),
                    ("sqlite-2", "sqlite"),
                    ("web-1", "web"),
                    ("web-2", "web"),
                    ("compress-1", "compress"),
                    ("compile-1", "compile"),
                    ("idle-1", "idle"),
                ],
                256,
            ),
            times_s=[40.0, 70.0, 100.0, 130.0],
            batch_size=2,
            boot_timeout_s=240.0,
            description=(
                "7 Debian bookworm guests (debootstrap minbase) under QEMU/TCG, 256 MiB each: "
                "Python+SQLite x2, web server + client x2, compressor (xz, gzip), gcc, idle; "
                "booted two at a time, snapshots at the same guest times"
            ),
        )
    if name == "busybox":
        return CaptureSpec(
            guest="busybox",
            domains=_domains([("dup-1", "dup"), ("dup-2", "dup")], 256),
            times_s=[20.0, 25.0, 30.0],
            batch_size=2,
            boot_timeout_s=90.0,
            description="2 busybox initramfs guests under QEMU/TCG, 256 MiB each, reading a shared ext4 disk",
        )
    if name == "kdump":
        return CaptureSpec(
            guest="busybox",
            domains=_domains([("dup-1", "dup"), ("dup-2", "dup")], 256),
            times_s=[20.0, 25.0, 30.0],
            batch_size=2,
            boot_timeout_s=90.0,
            snapshot_format="kdump-zlib",
            description="2 busybox initramfs guests under QEMU/TCG, 256 MiB each, reading a shared ext4 disk; "
                        "snapshots kept as QEMU's kdump-zlib dumps (dump-guest-memory)",
        )
    raise CaptureError(f"unknown preset {name!r}; expected one of: {', '.join(PRESETS)}")


PRESETS = ("default", "busybox", "kdump")
