"""Where capture finds host tools, the guest kernel and its cache folder."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from xpipe.capture.errors import CaptureError

log = logging.getLogger(__name__)

INSTALL_HINT = "run `bash scripts/install-capture-deps.sh` first"


def require_tool(name: str) -> str:
    """Path of executable ``name`` (also looked up in /sbin and /usr/sbin)."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if path is None:
        raise CaptureError(f"`{name}` not found on PATH; {INSTALL_HINT}")
    return path


@contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP held for the duration and delivered after it: a clean-up
    (stopping guests, restoring host settings) is never cut short by a second Ctrl-C."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def cache_dir() -> Path:
    """Folder for built guest images: $XPIPE_CACHE, else ~/.cache/xpipe (never in git)."""
    env = os.environ.get("XPIPE_CACHE")
    root = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xpipe"
    root.mkdir(parents=True, exist_ok=True)
    return root


def scratch_dir() -> Path:
    """Folder for the guests' scratch files (FIFOs, sockets, console and trace logs, the sparse
    flags disk): tmpfs (/dev/shm) when it is there, as they are short-lived."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        return shm
    return Path(os.environ.get("TMPDIR", "/tmp"))


def make_scratch(prefix: str) -> Path:
    """A fresh scratch folder ``PREFIX-PID-XXXX`` on tmpfs; first removes those of dead processes
    (left by a capture that was SIGKILLed, which could not clean up)."""
    base = scratch_dir()
    for old in base.glob(f"{prefix}-*-*"):
        pid = old.name[len(prefix) + 1 :].split("-", 1)[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            log.info("removing stale scratch folder %s", old)
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=base))


@dataclass(frozen=True)
class GuestKernel:
    """A distribution kernel from /boot with its initrd and module tree."""

    version: str
    vmlinuz: Path
    initrd: Path
    modules: Path


def find_kernel(boot: Path = Path("/boot")) -> GuestKernel:
    """Newest /boot/vmlinuz-* that has an initrd and a module tree (Debian's linux-image-amd64)."""
    candidates = []
    for vmlinuz in boot.glob("vmlinuz-*"):
        version = vmlinuz.name[len("vmlinuz-") :]
        initrd = boot / f"initrd.img-{version}"
        modules = Path("/lib/modules") / version
        if initrd.is_file() and modules.is_dir():
            candidates.append(GuestKernel(version, vmlinuz, initrd, modules))
    if not candidates:
        raise CaptureError(
            f"no guest kernel: expected {boot}/vmlinuz-V with {boot}/initrd.img-V and /lib/modules/V; "
            f"{INSTALL_HINT}"
        )

    # Sort numerically-ish so 6.1.0-10 beats 6.1.0-9.
    def key(k: GuestKernel) -> list:
        return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", k.version)]

    kernel = max(candidates, key=key)
    if not os.access(kernel.vmlinuz, os.R_OK):
        raise CaptureError(f"{kernel.vmlinuz} is not readable; {INSTALL_HINT}")
    log.debug("guest kernel %s", kernel.version)
    return kernel


def qemu_version() -> str:
    """First line of `qemu-system-x86_64 --version`, for the manifest's provenance."""
    out = subprocess.run(
        [require_tool("qemu-system-x86_64"), "--version"], check=False, capture_output=True, text=True
    )
    return out.stdout.splitlines()[0].strip() if out.stdout else "QEMU (unknown version)"
