"""The ``image`` guest kind: the user's own disk image (raw or qcow2), never modified.

Every guest boots its own qcow2 overlay of the image (``qemu-img create -b IMAGE -F FORMAT``
in the capture's scratch folder), so the guest may write to its disk and the image file
stays as it was. It boots by the image's own bootloader (the BIOS boots the disk) or by a
kernel, initrd and command line QEMU loads. Disk reads are QEMU's trace of the overlay's
block backend, as for the other kinds (xpipe.capture.guest.filter_root_reads), so they need
nothing in the guest. With ``agent: true`` the image runs scripts/guest-agent/xpipe-agent:
it says when the guest is up, runs the domain's workload command and copies
/proc/kpageflags at each snapshot; without it the guest is snapshot at times counted from
QEMU's start and page types come from the contents alone (zero pages, disk blocks).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpipe.capture.errors import CaptureError
from xpipe.capture.guest import GuestConfig
from xpipe.capture.host import require_tool
from xpipe.capture.spec import CaptureSpec, DomainSpec, ImageSpec
from xpipe.hashing import PAGE_SIZE

#: The agent a user copies into their image (docs/capture.md, "Your own image").
AGENT_DIR = Path(__file__).resolve().parents[2] / "scripts" / "guest-agent"


def disk_name(image: Path) -> str:
    """The image's name under ``disks`` in the manifest: its file name without suffix."""
    return "image-" + (re.sub(r"[^A-Za-z0-9_.-]", "_", image.name.split(".")[0]) or "disk")


def image_info(path: Path) -> dict[str, Any]:
    """`qemu-img info` of ``path`` (JSON); CaptureError naming the file when it cannot be read."""
    proc = subprocess.run([require_tool("qemu-img"), "info", "--output=json", str(path)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise CaptureError(f"{path}: qemu-img info failed: {' '.join(proc.stderr.split())[:200]}")
    return json.loads(proc.stdout)


def check_image(im: ImageSpec, fail: Callable[[str, str], None]) -> None:
    """``fail(key, expected)`` unless ``im`` can be booted: the files exist, the format is what
    `qemu-img info` says, the kernel keys go with ``boot: kernel`` only."""
    if not im.path.is_file():
        fail("image.path", f"{im.path}: " + ("no such file" if not im.path.exists() else "not a file"))
    try:
        info = image_info(im.path)
    except CaptureError as e:
        fail("image.path", str(e))
    if info.get("format") != im.format:
        fail("image.format", f"{im.path} is {info.get('format')} (qemu-img info), not {im.format}")
    if info.get("virtual-size", 0) % PAGE_SIZE:
        fail("image.path", f"{im.path}: virtual size {info.get('virtual-size')} is not whole "
                           f"{PAGE_SIZE}-byte blocks")
    if im.boot == "kernel":
        if im.kernel is None:
            fail("image.kernel", "required key is missing (with boot: kernel)")
        for key, f in (("image.kernel", im.kernel), ("image.initrd", im.initrd)):
            if f is not None and not f.is_file():
                fail(key, f"{f}: no such file")
    else:
        for key, given in (("image.kernel", im.kernel), ("image.initrd", im.initrd), ("image.append", im.append)):
            if given:
                fail(key, "only with boot: kernel (boot: bootloader boots the image's own)")


@dataclass(frozen=True)
class UserImage:
    """What every domain of an image spec boots: the user's image, through an overlay each."""

    spec: ImageSpec
    disk_name: str

    @property
    def root_disk(self) -> Path:
        return self.spec.path

    @property
    def kernel(self) -> Path | None:
        return self.spec.kernel if self.spec.boot == "kernel" else None

    @property
    def initrd(self) -> Path | None:
        return self.spec.initrd if self.spec.boot == "kernel" else None

    def append(self, workload: str) -> str:
        return self.spec.append if self.spec.boot == "kernel" else ""

    def recipe(self) -> dict[str, Any]:
        """What a resumed capture compares: the image file (size, mtime) and how it boots."""
        st = self.spec.path.stat()
        return {"image_file": f"{st.st_size}:{st.st_mtime_ns}", "format": self.spec.format,
                "boot": self.spec.boot, "append": self.append(""), "agent": self.spec.agent}

    def guest_config(self, d: DomainSpec, n_snapshots: int, workdir: Path) -> GuestConfig:
        """The guest of domain ``d``, booting a new overlay of the image in ``workdir``."""
        workdir.mkdir(parents=True, exist_ok=True)
        overlay = workdir / "root.qcow2"
        overlay.unlink(missing_ok=True)
        proc = subprocess.run([require_tool("qemu-img"), "create", "-q", "-f", "qcow2", "-F", self.spec.format,
                               "-b", str(self.spec.path.resolve()), str(overlay)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise CaptureError(f"{self.spec.path}: qemu-img create of an overlay failed: "
                               f"{' '.join(proc.stderr.split())[:200]}")
        return GuestConfig(d.id, d.memory_mib, self.kernel, self.initrd, self.append(d.workload), overlay,
                           n_snapshots, workdir, root_format="qcow2", root_readonly=False, agent=self.spec.agent)

    @contextmanager
    def raw_disk(self, near: Path) -> Iterator[Path]:
        """The image as a raw file, whose 4 KiB blocks are what the guest reads: the image itself,
        or a qcow2 image converted (sparse) into a folder in ``near``, deleted afterwards."""
        if self.spec.format == "raw":
            yield self.spec.path
            return
        tmp = Path(tempfile.mkdtemp(prefix=".raw-", dir=near))
        try:
            raw = tmp / "disk.raw"
            proc = subprocess.run([require_tool("qemu-img"), "convert", "-f", self.spec.format, "-O", "raw",
                                   str(self.spec.path), str(raw)], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise CaptureError(f"{self.spec.path}: qemu-img convert to raw failed: "
                                   f"{' '.join(proc.stderr.split())[:200]}")
            yield raw
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def user_images(spec: CaptureSpec) -> tuple[dict[str, UserImage], str]:
    """Each domain's image (the spec's one), and what the manifest's description says of it."""
    assert spec.image is not None
    im = spec.image
    image = UserImage(im, disk_name(im.path))
    how = f"kernel {im.kernel.name}" if im.boot == "kernel" else "its own bootloader"
    agent = "with xpipe's guest agent" if im.agent else "without an agent (no kpageflags; times from QEMU's start)"
    return ({d.id: image for d in spec.domains},
            f"User image {im.path.name} ({im.format}) booted by {how}, {agent}")
