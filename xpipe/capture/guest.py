"""One QEMU/TCG guest: start, wait for boot, snapshot (kpageflags + pmemsave), stop.

QEMU runs in its own process group with a parent-death signal, and ``stop`` kills
that group if QEMU does not quit, so no guest outlives the capture.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpipe.capture.errors import CaptureError
from xpipe.capture.host import require_tool
from xpipe.capture.qmp import QMP, connect_unix
from xpipe.capture.workloads import KPF_BLOCK
from xpipe.hashing import PAGES_PER_MIB
from xpipe.pagetypes import KPF

log = logging.getLogger(__name__)

#: kpageflags for "no page frame here" (pagemap.rst): fills frames the guest did not report.
KPF_NOPAGE = 1 << KPF["NOPAGE"]


@dataclass
class GuestConfig:
    name: str
    memory_mib: int
    kernel: Path
    initrd: Path
    append: str
    root_disk: Path
    n_snapshots: int
    workdir: Path

    @property
    def frames(self) -> int:
        return self.memory_mib * PAGES_PER_MIB

    @property
    def slot_bytes(self) -> int:
        """Bytes per snapshot on the flags disk: one u64 per frame, whole 64 KiB blocks, one spare."""
        return (-(-self.frames * 8 // KPF_BLOCK) + 1) * KPF_BLOCK


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG: if the capture process dies (even by SIGKILL), QEMU gets SIGKILL.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)


class Guest:
    """A running guest; use ``start`` then ``wait_ready`` and finally ``stop`` (in a finally)."""

    def __init__(self, cfg: GuestConfig) -> None:
        self.cfg = cfg
        self.proc: subprocess.Popen | None = None
        self.qmp: QMP | None = None
        self.ctl: socket.socket | None = None
        self._buf = b""
        self.start_epoch_s = 0.0
        self.start_mono = 0.0
        self.ready_uptime_s: float | None = None
        wd = cfg.workdir
        self.console = wd / "console.log"
        self.trace = wd / "trace.log"
        self.events = wd / "trace-events"
        self.kpf_disk = wd / "kpageflags.img"
        self.qmp_sock = wd / "qmp.sock"
        self.ctl_sock = wd / "ctl.sock"

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def command_line(self) -> list[str]:
        c = self.cfg
        # fmt: off
        return [
            require_tool("qemu-system-x86_64"),
            "-name", c.name,
            "-accel", "tcg",
            "-machine", "pc",
            "-m", str(c.memory_mib),
            "-smp", "1",
            "-nodefaults", "-display", "none", "-no-reboot",
            "-kernel", str(c.kernel),
            "-initrd", str(c.initrd),
            "-append", c.append,
            "-chardev", f"file,id=con,path={self.console}", "-serial", "chardev:con",
            "-chardev", f"socket,id=ctl,path={self.ctl_sock},server=on,wait=off", "-serial", "chardev:ctl",
            "-qmp", f"unix:{self.qmp_sock},server=on,wait=off",
            # Root disk first (vda), read-only so its block hashes stay those of the image.
            "-drive", f"file={c.root_disk},if=virtio,format=raw,readonly=on",
            "-drive", f"file={self.kpf_disk},if=virtio,format=raw,cache=writethrough",
            # bdrv_open_common names each block node, so root-disk reads can be told apart.
            "-trace", f"events={self.events},file={self.trace}",
            "-msg", "timestamp=on",
        ]
        # fmt: on

    def start(self) -> None:
        c = self.cfg
        c.workdir.mkdir(parents=True, exist_ok=True)
        for p in (self.console, self.trace, self.qmp_sock, self.ctl_sock, self.kpf_disk):
            p.unlink(missing_ok=True)
        self.events.write_text("blk_co_preadv\nbdrv_open_common\n")
        with open(self.kpf_disk, "wb") as f:
            f.truncate(c.slot_bytes * c.n_snapshots)
        cmd = self.command_line()
        log.debug("%s: %s", c.name, " ".join(cmd))
        self.start_epoch_s = time.time()
        self.start_mono = time.monotonic()
        with open(c.workdir / "qemu.out", "wb") as out:  # QEMU keeps its own copy of the fd
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (no threads here)
            )
        try:
            self.qmp = QMP(self.qmp_sock)
            self.ctl = connect_unix(self.ctl_sock)
        except CaptureError as e:
            raise CaptureError(f"guest {c.name}: QEMU did not start: {e}\n{self.qemu_output()}") from e

    def elapsed_s(self) -> float:
        return time.monotonic() - self.start_mono

    def _line(self, deadline: float) -> str:
        assert self.ctl is not None
        while b"\n" not in self._buf:
            if self.proc is not None and self.proc.poll() is not None:
                raise self.failure(f"QEMU exited with status {self.proc.returncode}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.ctl.settimeout(min(left, 1.0))
            try:
                chunk = self.ctl.recv(4096)
            except TimeoutError:
                continue
            if not chunk:  # QEMU is going away: give it a moment so its exit status and message show
                try:
                    assert self.proc is not None
                    self.proc.wait(3)
                    raise self.failure(f"QEMU exited with status {self.proc.returncode}")
                except subprocess.TimeoutExpired:
                    raise self.failure("closed its control channel") from None
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def wait_ready(self, timeout_s: float) -> float:
        """Wait for the guest agent's hello; returns guest uptime then. Raises with the console tail."""
        deadline = self.start_mono + timeout_s
        while True:
            try:
                line = self._line(min(deadline, time.monotonic() + 15))
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise self.failure(f"did not boot within {timeout_s:.0f} s") from None
                last = self.console_tail(1).strip()[:100]
                log.info("%s: still booting after %.0f s (console: %s)", self.name, self.elapsed_s(), last)
                continue
            if line.startswith("xpipe-ready"):
                self.ready_uptime_s = float(line.split()[1])
                return self.ready_uptime_s

    def request_kpageflags(self, index: int) -> None:
        """Ask the guest to copy /proc/kpageflags into slot ``index`` of the flags disk."""
        assert self.ctl is not None
        seek = index * self.cfg.slot_bytes // KPF_BLOCK
        self.ctl.sendall(f"snap {index} {seek}\n".encode())

    def wait_kpageflags(self, index: int, timeout_s: float = 120.0) -> tuple[float, int]:
        """Wait for the guest's answer to ``request_kpageflags``: (guest uptime, bytes copied)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._line(deadline)
            except TimeoutError:
                raise self.failure(f"no answer to snapshot {index} within {timeout_s:.0f} s") from None
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "done" and parts[1] == str(index):
                if len(parts) < 4 or not parts[3].isdigit():
                    raise self.failure(f"gave a malformed snapshot answer {line!r}")
                return float(parts[2]), int(parts[3])

    def pmemsave(self, path: Path, pause: bool = True) -> None:
        """Dump all guest RAM (guest-physical 0..memory) to ``path``; the guest is paused during
        the dump unless the caller has paused it already (``pause=False``)."""
        assert self.qmp is not None
        size = self.cfg.memory_mib << 20
        if not pause:
            self.qmp.command("pmemsave", val=0, size=size, filename=str(path))
            return
        self.qmp.command("stop")
        try:
            self.qmp.command("pmemsave", val=0, size=size, filename=str(path))
        finally:
            self.qmp.command("cont")

    def pause(self) -> None:
        assert self.qmp is not None
        self.qmp.command("stop")

    def kpageflags(self, index: int, nbytes: int) -> np.ndarray:
        """Slot ``index`` of the flags disk as one u64 per frame; frames past the
        ``nbytes`` the guest reported are marked NOPAGE (the kernel lists frames up to max_pfn)."""
        frames = self.cfg.frames
        with open(self.kpf_disk, "rb") as f:
            f.seek(index * self.cfg.slot_bytes)
            raw = f.read(frames * 8)
        flags = np.full(frames, KPF_NOPAGE, dtype="<u8")
        n = min(frames, max(nbytes, 0) // 8)
        flags[:n] = np.frombuffer(raw, dtype="<u8", count=n)
        return flags

    def root_reads(self) -> list[str]:
        """blk_co_preadv lines of the root disk only, exactly as QEMU wrote them."""
        if not self.trace.exists():
            return []
        lines = self.trace.read_text(errors="replace").splitlines()
        return filter_root_reads(lines, self.cfg.root_disk)

    def console_tail(self, n: int = 25) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return "(no console output)"
        lines = [line for line in text.splitlines() if line.strip()]
        return "\n".join(lines[-n:]) or "(no console output)"

    def qemu_output(self) -> str:
        try:
            return (self.cfg.workdir / "qemu.out").read_text(errors="replace").strip()
        except OSError:
            return ""

    def failure(self, what: str) -> CaptureError:
        out = self.qemu_output()
        return CaptureError(
            f"guest {self.name} {what}; last console lines ({self.console}):\n{self.console_tail()}"
            + (f"\nQEMU said: {out}" if out else "")
        )

    def stop(self) -> None:
        """Quit QEMU; kill its process group if it does not go. Safe to call twice."""
        if self.proc is None:
            return
        if self.proc.poll() is None and self.qmp is not None:
            try:
                self.qmp.command("quit", timeout_s=5)
            except (CaptureError, OSError):
                pass
        for sig, wait_s in ((None, 5.0), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
            if sig is not None:
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
            try:
                self.proc.wait(wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        # Anything else left in the group (there should be nothing) goes too.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        if self.ctl is not None:
            self.ctl.close()
            self.ctl = None


_OPEN = re.compile(
    r'bdrv_open_common bs (0x[0-9a-f]+) filename "([^"]*)" flags 0x[0-9a-f]+ format_name "([^"]*)"'
)
_READ = re.compile(r"blk_co_preadv blk 0x[0-9a-f]+ bs (0x[0-9a-f]+) ")


def filter_root_reads(lines: list[str], root_disk: Path) -> list[str]:
    """Keep the blk_co_preadv lines whose block node is the format node of ``root_disk``."""
    root_bs: set[str] = set()
    target = os.path.realpath(root_disk)
    for line in lines:
        m = _OPEN.search(line)
        if m and m.group(3) != "file" and os.path.realpath(m.group(2)) == target:
            root_bs.add(m.group(1))
    if not root_bs:
        raise CaptureError(f"trace has no bdrv_open_common line for {root_disk}; cannot pick its reads")
    out = []
    for line in lines:
        m = _READ.search(line)
        if m and m.group(1) in root_bs:
            out.append(line)
    return out
