"""One QEMU/TCG guest: start, wait for boot, snapshot (kpageflags + page hashes), stop.

Guest RAM is never written to a file: ``page_hashes`` has QEMU ``pmemsave`` each RAM
range into a FIFO that this process hashes as it reads (xpipe.readers.memdump.hash_stream).
The ranges are where QEMU maps the RAM block (``info mtree``): a PC guest's RAM is one
range from 0 up to 3.5 GiB; above that QEMU puts all but the first 3 GiB above 4 GiB
(gfn 0x100000 on), past the PCI hole.

QEMU runs in its own process group with a parent-death signal, and ``stop`` kills
that group if QEMU does not quit, so no guest outlives the capture.
"""

from __future__ import annotations

import ctypes
import fcntl
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpipe.capture.errors import CaptureError
from xpipe.capture.host import require_tool, signals_held
from xpipe.capture.qmp import QMP, connect_unix
from xpipe.capture.workloads import KPF_BLOCK
from xpipe.errors import InputError
from xpipe.hashing import PAGE_SIZE, PAGES_PER_MIB
from xpipe.pagetypes import KPF
from xpipe.readers.memdump import hash_stream

log = logging.getLogger(__name__)

#: kpageflags for "no page frame here" (pagemap.rst): fills frames the guest did not report.
KPF_NOPAGE = 1 << KPF["NOPAGE"]
#: Where a PC puts the RAM that does not fit below its PCI hole: 4 GiB, frame 0x100000.
#: /proc/kpageflags runs to the highest frame, so a flags slot holds up to this many more words.
HIGH_RAM_GFN = 0x100000
#: fcntl F_SETPIPE_SZ: a 1 MiB FIFO (the most an unprivileged process may ask) takes 256 of
#: QEMU's 4 KiB writes per read.
F_SETPIPE_SZ = 1031
PIPE_BYTES = 1 << 20
#: pmemsave streams 300-700 MB/s here; a range may take this long per GiB, and 60 s more.
STREAM_S_PER_GIB = 30.0


@dataclass
class GuestConfig:
    name: str
    memory_mib: int
    kernel: Path | None  # None: the BIOS boots the root disk (its own bootloader)
    initrd: Path | None
    append: str
    root_disk: Path
    n_snapshots: int
    workdir: Path
    root_format: str = "raw"
    root_readonly: bool = True  # False for an overlay of the user's image (xpipe.capture.userimage)
    agent: bool = True  # the guest runs the snapshot agent: readiness, kpageflags on the flags disk

    @property
    def frames(self) -> int:
        return self.memory_mib * PAGES_PER_MIB

    @property
    def slot_bytes(self) -> int:
        """Bytes per snapshot on the flags disk: one u64 per frame number up to the highest
        RAM can have (its frames plus a hole below 4 GiB), whole 64 KiB blocks, one spare.
        The disk is sparse: only what the guest copies takes space, one slot at a time."""
        return (-(-(self.frames + HIGH_RAM_GFN) * 8 // KPF_BLOCK) + 1) * KPF_BLOCK


_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent(parent: int) -> None:
    # PR_SET_PDEATHSIG: if the capture process dies (even by SIGKILL), QEMU gets SIGKILL.
    _libc.prctl(1, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # it died before the signal was armed
        os._exit(1)


def _punch(path: Path, offset: int, length: int) -> None:
    """Free ``length`` bytes at ``offset`` of ``path`` (FALLOC_FL_PUNCH_HOLE | KEEP_SIZE)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        _libc.fallocate(fd, 3, ctypes.c_long(offset), ctypes.c_long(length))  # best effort: space only
    finally:
        os.close(fd)


#: A RAM region of `info mtree`: START-END (prio P, ram): either "alias NAME @BLOCK OFFSET-END" or "BLOCK".
_RAM = re.compile(r"^\s+([0-9a-f]+)-([0-9a-f]+) \(prio -?\d+, ram\): "
                  r"(?:alias \S+ @(\S+) ([0-9a-f]+)-[0-9a-f]+|(\S+))")


def ram_ranges(mtree: str, ram_bytes: int) -> list[tuple[int, int]]:
    """(guest-physical address, bytes) of each range of guest RAM, by address, from QEMU's
    ``info mtree``: the RAM regions of address space ``memory`` that map one RAM block (as
    aliases of it, or the block itself), merged where they overlap (the BIOS's shadow RAM
    below 1 MiB is mapped twice), when they map all ``ram_bytes`` of it once. CaptureError
    when no block's regions do."""
    pieces: dict[str, list[tuple[int, int, int]]] = {}
    inside = False
    for line in mtree.splitlines():  # HMP ends its lines with CRLF
        if not line.startswith(" "):  # a section heading, or the blank line after a section
            inside = line.strip() == "address-space: memory"
            continue
        m = _RAM.match(line) if inside else None
        if m:
            start, end = int(m.group(1), 16), int(m.group(2), 16) + 1
            target = m.group(3) or m.group(5)
            offset = int(m.group(4), 16) if m.group(3) else 0
            pieces.setdefault(target, []).append((start, end - start, offset))
    found = []
    for target, parts in pieces.items():
        merged: list[list[int]] = []
        for start, size, _ in sorted(parts):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], start + size)
            else:
                merged.append([start, start + size])
        ranges = [(a, b - a) for a, b in merged]
        mapped = sum(n for _, n in ranges)
        found.append(f"{target}: {mapped} bytes")
        if (mapped == ram_bytes and max(o + n for _, n, o in parts) == ram_bytes
                and all(a % PAGE_SIZE == 0 and n % PAGE_SIZE == 0 for a, n in ranges)):
            return ranges
    raise CaptureError(f"QEMU's memory tree (info mtree) maps no RAM block of the guest's {ram_bytes} bytes "
                       f"whole (RAM regions found: {', '.join(found) or 'none'})")


def ram_frames(ranges: list[tuple[int, int]]) -> np.ndarray:
    """The guest frame numbers of ``ranges``, in order."""
    return np.concatenate([np.arange(a // PAGE_SIZE, (a + n) // PAGE_SIZE, dtype=np.int64) for a, n in ranges])


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
        self._ram: list[tuple[int, int]] | None = None
        wd = cfg.workdir
        self.console = wd / "console.log"
        self.trace = wd / "trace.log"
        self.events = wd / "trace-events"
        self.kpf_disk = wd / "kpageflags.img"
        self.qmp_sock = wd / "qmp.sock"
        self.ctl_sock = wd / "ctl.sock"
        self.fifo = wd / "ram.fifo"  # pmemsave writes here, page_hashes reads: no dump on disk

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
            *(["-kernel", str(c.kernel)] if c.kernel else []),
            *(["-initrd", str(c.initrd)] if c.kernel and c.initrd else []),
            *(["-append", c.append] if c.kernel and c.append else []),
            "-chardev", f"file,id=con,path={self.console}", "-serial", "chardev:con",
            "-chardev", f"socket,id=ctl,path={self.ctl_sock},server=on,wait=off", "-serial", "chardev:ctl",
            "-qmp", f"unix:{self.qmp_sock},server=on,wait=off",
            # Root disk first (vda), read-only so its block hashes stay those of the image (a
            # user's image: a writable qcow2 overlay of it, xpipe.capture.userimage).
            "-drive", f"file={c.root_disk},if=virtio,format={c.root_format}"
                      + (",readonly=on" if c.root_readonly else ""),
            *(["-drive", f"file={self.kpf_disk},if=virtio,format=raw,cache=writethrough"] if c.agent else []),
            # bdrv_open_common names each block node, so root-disk reads can be told apart.
            "-trace", f"events={self.events},file={self.trace}",
            "-msg", "timestamp=on",
        ]
        # fmt: on

    def start(self) -> None:
        c = self.cfg
        c.workdir.mkdir(parents=True, exist_ok=True)
        for p in (self.console, self.trace, self.qmp_sock, self.ctl_sock, self.kpf_disk, self.fifo):
            p.unlink(missing_ok=True)
        os.mkfifo(self.fifo, 0o600)
        self.events.write_text("blk_co_preadv\nbdrv_open_common\n")
        with open(self.kpf_disk, "wb") as f:
            f.truncate(c.slot_bytes * c.n_snapshots)
        cmd = self.command_line()
        log.debug("%s: %s", c.name, " ".join(cmd))
        self.start_epoch_s = time.time()
        self.start_mono = time.monotonic()
        parent = os.getpid()
        with open(c.workdir / "qemu.out", "wb") as out:  # QEMU keeps its own copy of the fd
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: _die_with_parent(parent),  # noqa: PLW1509 (only async-signal-safe calls)
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

    def run_workload(self, command: str, timeout_s: float = 30.0) -> None:
        """Have the agent of an image guest (scripts/guest-agent/xpipe-agent) start ``command``."""
        assert self.ctl is not None
        self.ctl.sendall(f"run {command}\n".encode())
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self._line(deadline)
            except TimeoutError:
                raise self.failure(f"did not start its workload within {timeout_s:.0f} s") from None
            if line.startswith("started"):
                return

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

    def ram(self) -> list[tuple[int, int]]:
        """(guest-physical address, bytes) of each range of guest RAM, asked of QEMU once."""
        assert self.qmp is not None
        if self._ram is None:
            size = self.qmp.command("query-memory-size-summary")["base-memory"]
            mtree = self.qmp.command("human-monitor-command", **{"command-line": "info mtree"})
            try:
                self._ram = ram_ranges(mtree, size)
            except CaptureError as e:
                raise CaptureError(f"guest {self.name}: {e}") from None
        return self._ram

    def page_hashes(self, pause: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(gfn, hash) of every frame of guest RAM, streamed from QEMU: no dump is written.
        The guest is paused while it is read unless the caller has paused it (``pause=False``)."""
        assert self.qmp is not None
        ranges = self.ram()
        if pause:
            self.qmp.command("stop")
        hashes = np.concatenate([self._stream(address, size) for address, size in ranges])
        if pause:
            self.qmp.command("cont")
        return ram_frames(ranges), hashes

    def _stream(self, address: int, size: int) -> np.ndarray:
        """Hashes of the pages of guest-physical ``address``..+``size``: QEMU's pmemsave writes
        them into the FIFO while a thread here reads and hashes them."""
        assert self.qmp is not None
        # Open first, non-blocking: QEMU's open for writing then succeeds at once, and a
        # pmemsave that fails before opening leaves nothing waiting on the other end.
        fd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK)
        stop = threading.Event()
        result: dict[str, object] = {}

        def read() -> None:
            try:
                result["hashes"] = hash_stream(fd, size // PAGE_SIZE, self.fifo, stop)
            except (InputError, OSError) as e:
                result["error"] = e

        reader = threading.Thread(target=read, name=f"hash-{self.name}", daemon=True)
        try:
            try:
                fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_BYTES)
            except OSError:  # a lower /proc/sys/fs/pipe-max-size: the default pipe is only slower
                pass
            reader.start()
            try:
                self.qmp.command("pmemsave", timeout_s=60 + STREAM_S_PER_GIB * size / 2**30,
                                 val=address, size=size, filename=str(self.fifo))
            finally:
                stop.set()  # after a failure nothing more comes; after success QEMU has closed its end
                reader.join(30)
        finally:
            os.close(fd)
        if reader.is_alive():
            raise self.failure(f"sent guest memory at {address:#x} that was not all read within 30 s")
        if "error" in result:
            raise self.failure(f"sent guest memory at {address:#x} that could not be read: {result['error']}")
        return result["hashes"]  # type: ignore[return-value]

    def pmemsave(self, path: Path, pause: bool = True) -> None:
        """Write guest RAM to the file ``path`` as a ``pmemsave`` snapshot of a bundle holds it
        (docs/capture-bundle.md: frames 0..N-1, so only for RAM that is one range from 0);
        paused as ``page_hashes``. For bundles that keep raw dumps; a capture never does."""
        assert self.qmp is not None
        ranges = self.ram()
        if len(ranges) != 1 or ranges[0][0] != 0:
            raise CaptureError(f"guest {self.name}: RAM is not one range from address 0 ({ranges}); "
                               "a raw pmemsave file cannot hold it")
        if pause:
            self.qmp.command("stop")
        self.qmp.command("pmemsave", val=0, size=ranges[0][1], filename=str(path))
        if pause:
            self.qmp.command("cont")

    def pause(self) -> None:
        assert self.qmp is not None
        self.qmp.command("stop")

    def resume(self) -> None:
        assert self.qmp is not None
        self.qmp.command("cont")

    def kpageflags(self, index: int, nbytes: int) -> np.ndarray:
        """Slot ``index`` of the flags disk as one u64 per frame number up to the highest RAM
        frame (/proc/kpageflags is indexed by frame number, the PCI hole included); words past
        the ``nbytes`` the guest reported are marked NOPAGE (the kernel lists frames up to
        max_pfn). The slot's space is freed once read."""
        words = int(ram_frames(self.ram())[-1]) + 1
        at = index * self.cfg.slot_bytes
        with open(self.kpf_disk, "rb") as f:
            f.seek(at)
            raw = f.read(words * 8)
        _punch(self.kpf_disk, at, self.cfg.slot_bytes)
        flags = np.full(words, KPF_NOPAGE, dtype="<u8")
        n = min(words, max(nbytes, 0) // 8)
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


def stop_all(guests: list[Guest]) -> None:
    """Stop every guest, with SIGINT, SIGTERM and SIGHUP held until all are gone: a second
    Ctrl-C must not cut the clean-up short (it is delivered right after)."""
    with signals_held():
        for g in guests:
            g.stop()


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
