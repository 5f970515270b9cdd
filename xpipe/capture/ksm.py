"""Check xpipe's sharing arithmetic against the host kernel's KSM on real guests.

xpipe predicts the pages a content-based merger saves as "host-backed guest pages
minus distinct contents among them" (each content kept once). Linux KSM reports the
same quantity as pages_sharing. Guests run with THP off (huge pages are not merged
until split) and KSM scanning fast; once pages_sharing settles, the guests are paused
and both numbers are taken at that moment.
"""

from __future__ import annotations

import logging
import mmap
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpipe.capture.errors import CaptureError
from xpipe.capture.guest import Guest, GuestConfig, stop_all
from xpipe.capture.host import make_scratch, signals_held
from xpipe.capture.images import guest_image
from xpipe.hashing import ZERO_HASH, hash_pages

log = logging.getLogger(__name__)

KSM = Path("/sys/kernel/mm/ksm")
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")
#: Scanning fast enough to settle within a minute on a few hundred MiB of guests.
KSM_SETTINGS = {"pages_to_scan": "20000", "sleep_millisecs": "10"}
#: Pinned while KSM is compared: with use_zero_pages on, KSM maps empty pages to the kernel's
#: zero page without counting them in pages_sharing, and the prediction counts them.
PINNED = {"use_zero_pages": "0"}
#: /proc/PID/pagemap has one entry per host page (guest frames are host pages here: both 4 KiB).
HOST_PAGE = mmap.PAGESIZE
PAGEMAP_PRESENT = 1 << 63
PAGEMAP_SWAPPED = 1 << 62
PAGEMAP_PFN = (1 << 55) - 1  # bits 0-54: the host frame (visible to root only)
#: /proc/kpageflags bit of the kernel's shared zero page (Documentation/admin-guide/mm/pagemap.rst).
KPF_ZERO_PAGE = 1 << 24


@dataclass(frozen=True)
class KsmResult:
    ksm_pages_sharing: int
    ksm_pages_shared: int
    present: int
    distinct: int
    #: Contents held by two or more backed pages: what KSM keeps one copy of (its pages_shared).
    duplicated: int = 0
    #: Backed pages that are all zeros (most of the saving on freshly booted guests).
    zero: int = 0
    #: The same prediction over every mergeable QEMU mapping (guest RAM plus firmware, ROM
    #: and ACPI blocks, which QEMU also marks mergeable): what KSM actually scans.
    predicted_all_mergeable: int = 0

    @property
    def predicted(self) -> int:
        return self.present - self.distinct

    @property
    def ratio(self) -> float:
        return self.ksm_pages_sharing / self.predicted if self.predicted else float("nan")


def _read(name: str) -> str:
    return (KSM / name).read_text().strip()


def _write(path: Path, value: str) -> None:
    try:
        path.write_text(value)
    except OSError as e:
        raise CaptureError(f"cannot write {value!r} to {path}: {e}") from e


def _thp_mode() -> str:
    m = re.search(r"\[(\w+)\]", THP.read_text())
    if not m:
        raise CaptureError(f"{THP}: unexpected content {THP.read_text()!r}")
    return m.group(1)


def check_host(what: str = "validate-ksm") -> None:
    """CaptureError unless this process may change KSM and THP: root, and a kernel with KSM.
    ``what`` names the command in the error."""
    if os.geteuid() != 0:
        raise CaptureError(f"{what} needs root (it changes /sys/kernel/mm settings)")
    if not (KSM / "run").exists():
        raise CaptureError(f"{KSM} not found: this host kernel has no KSM")


@contextmanager
def host_settings(settings: dict[str, str] = KSM_SETTINGS, what: str = "validate-ksm") -> Iterator[None]:
    """THP off and KSM's scanning ``settings`` (and PINNED) for the duration; everything
    restored afterwards, KSM unmerged (run=2) before its old `run` value is put back, with
    Ctrl-C and SIGTERM held until it is (the same signal again is delivered after)."""
    check_host(what)
    settings = {**settings, **{k: v for k, v in PINNED.items() if (KSM / k).exists()}}
    saved = {name: _read(name) for name in ("run", *settings)}
    saved_thp = _thp_mode() if THP.exists() else None
    log.info("host settings saved: ksm %s, THP %s", saved, saved_thp)
    try:
        if saved_thp is not None:
            _write(THP, "never")
        for name, value in settings.items():
            _write(KSM / name, value)
        yield
    finally:
        with signals_held():  # Ctrl-C is delivered after, not half-way through
            # Unmerge first so no merged page outlives the check, then put every value back.
            for action in (
                lambda: _write(KSM / "run", "2"),
                *(lambda n=n: _write(KSM / n, saved[n]) for n in settings),
                lambda: _write(KSM / "run", saved["run"]),
                lambda: saved_thp is not None and _write(THP, saved_thp),
            ):
                try:
                    action()
                except CaptureError as e:
                    log.error("restoring host settings: %s", e)
            log.info("host settings restored: ksm run=%s, THP %s", _read("run"),
                     _thp_mode() if THP.exists() else "-")


@contextmanager
def start_ksm(settings: dict[str, str]) -> Iterator[None]:
    """KSM running (run=1) at ``settings``' rate with THP off, for a capture that records
    KSM beside its snapshots; everything restored afterwards (host_settings)."""
    with host_settings(settings, "a capture with ksm"):
        _write(KSM / "run", "1")
        log.info("KSM running for the capture: %s, THP never", settings)
        yield


def guest_ram_mapping(pid: int, size: int) -> int:
    """Start address of QEMU's guest-RAM mapping: the read-write private mapping of ``size`` bytes."""
    found = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        if hi - lo == size and fields[1].startswith("rw") and len(fields) < 6:
            found.append(lo)
    if len(found) != 1:
        raise CaptureError(
            f"QEMU pid {pid}: expected one anonymous rw mapping of {size} bytes, found {len(found)}"
        )
    return found[0]


def _backed(pagemap, start: int, size: int) -> np.ndarray:
    """Per host page of [start, start + size) of an open /proc/PID/pagemap: does the host
    back it with a page KSM could scan (present or swapped)? A page that maps the kernel's
    shared zero page (a read of memory never written) is not: KSM scans anonymous pages only."""
    n = size // HOST_PAGE
    pagemap.seek(start // HOST_PAGE * 8)
    entries = np.frombuffer(pagemap.read(n * 8), dtype="<u8")
    if len(entries) != n:
        raise CaptureError(f"{pagemap.name}: short pagemap read ({len(entries)} of {n} entries)")
    backed = (entries & np.uint64(PAGEMAP_PRESENT | PAGEMAP_SWAPPED)) != 0
    present = (entries & np.uint64(PAGEMAP_PRESENT)) != 0
    pfn = entries & np.uint64(PAGEMAP_PFN)
    # Only a frame mapped more than once can be the zero page (or a KSM page): ask kpageflags.
    frames, counts = np.unique(pfn[present], return_counts=True)
    zero = [f for f in frames[counts > 1] if _kpageflags(int(f)) & KPF_ZERO_PAGE]
    if zero:
        backed &= ~(present & np.isin(pfn, np.array(zero, dtype=np.uint64)))
    return backed


def _kpageflags(pfn: int) -> int:
    with open("/proc/kpageflags", "rb") as f:
        raw = os.pread(f.fileno(), 8, pfn * 8)
    return int.from_bytes(raw, "little") if len(raw) == 8 else 0


def present_frames(pid: int, ram_start: int, size: int) -> np.ndarray:
    """Boolean per guest frame of the guest RAM at ``ram_start``: does the host back it?"""
    with open(f"/proc/{pid}/pagemap", "rb") as f:
        return _backed(f, ram_start, size)


def _mergeable_mappings(pid: int) -> list[tuple[int, int]]:
    """(start, end) of each mapping of ``pid`` marked MADV_MERGEABLE (`mg` in smaps VmFlags)."""
    out = []
    start = end = 0
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
        if head:
            start, end = int(head.group(1), 16), int(head.group(2), 16)
        elif line.startswith("VmFlags:") and " mg" in line:
            out.append((start, end))
    return out


def other_mergeable_pages(pid: int, ram_start: int) -> np.ndarray:
    """Hashes of the host-backed pages of QEMU's mergeable mappings other than guest RAM."""
    hashes = []
    with open(f"/proc/{pid}/pagemap", "rb") as pm, open(f"/proc/{pid}/mem", "rb") as mem:
        for lo, hi in _mergeable_mappings(pid):
            if lo == ram_start:
                continue
            backed = _backed(pm, lo, hi - lo)
            if not backed.any():
                continue
            mem.seek(lo)
            hashes.append(hash_pages(mem.read(hi - lo))[backed])
    return np.concatenate(hashes) if hashes else np.empty(0, dtype=np.uint64)


@dataclass(frozen=True)
class KsmAtSnapshot:
    """KSM's counters at a snapshot of running guests, and per guest (in order) which frames
    of its RAM the host backs and the hashes of its other mergeable pages, all taken while
    the guests are paused. With the guests' page hashes, :meth:`entry` is what the bundle
    records beside them (docs/capture-bundle.md, ``ksm``)."""

    pages_sharing: int
    pages_shared: int
    full_scans: int
    backed: list[np.ndarray]
    extra: list[np.ndarray]
    settled: bool = False

    def pages(self, hashes: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """The contents of the backed guest pages, and of every mergeable page (those and
        QEMU's other mergeable blocks): what the prediction counts."""
        backed = np.concatenate([h[b] for h, b in zip(hashes, self.backed)])
        return backed, np.concatenate([backed, *self.extra])

    def entry(self, hashes: list[np.ndarray], names: list[str]) -> dict:
        """The snapshot's ``ksm`` record: KSM's counters and xpipe's prediction of them for
        the same moment over every guest of the batch (``names``): backed pages minus
        distinct contents among them (KSM's pages_sharing; THP is off)."""
        backed, everything = self.pages(hashes)
        return {
            "guests": list(names),
            "pages_sharing": self.pages_sharing,
            "pages_shared": self.pages_shared,
            "full_scans": self.full_scans,
            "backed_pages": len(backed),
            "predicted_sharing": int(len(backed) - len(np.unique(backed))),
            "predicted_sharing_all_mergeable": int(len(everything) - len(np.unique(everything))),
            "settled": self.settled,
        }


#: Seconds a paused batch may wait for KSM to settle at one snapshot (``settle``).
SETTLE_TIMEOUT_S = 300.0


def sample_paused(guests: list[Guest], settle: bool = False, timeout_s: float = SETTLE_TIMEOUT_S) -> KsmAtSnapshot:
    """KSM's counters and the guests' backed frames, read while ``guests`` are all paused
    (the pagemap before QEMU reads the memory: reading a page never written would map it).
    With ``settle``, once pages_sharing has stopped moving on the paused guests (at most
    ``timeout_s`` seconds, else a CaptureError)."""
    if settle:
        _wait_settled(timeout_s)
    counters = [int(_read(n)) for n in ("pages_sharing", "pages_shared", "full_scans")]
    backed, extra = [], []
    for g in guests:
        size = g.cfg.memory_mib << 20
        ram = guest_ram_mapping(g.pid, size)
        backed.append(present_frames(g.pid, ram, size))
        extra.append(other_mergeable_pages(g.pid, ram))
    return KsmAtSnapshot(*counters, backed, extra, settled=settle)


def _wait_settled(timeout_s: float, window_s: float = 8.0, tol: float = 0.002) -> int:
    """Poll pages_sharing until it moved less than ``tol`` over ``window_s`` and KSM did 3+ full scans."""
    scans0 = int(_read("full_scans"))
    t0 = time.monotonic()
    history: list[tuple[float, int]] = []
    last_report = 0.0
    while True:
        now = time.monotonic()
        sharing = int(_read("pages_sharing"))
        history.append((now, sharing))
        scans = int(_read("full_scans")) - scans0
        old = [s for t, s in history if now - t >= window_s]
        if old and scans >= 3 and abs(sharing - old[-1]) <= tol * max(sharing, 1):
            log.info("KSM settled after %.0f s: pages_sharing %d (%d full scans)", now - t0, sharing, scans)
            return sharing
        if now - last_report >= 5:
            log.info(
                "KSM merging: pages_sharing %d, pages_shared %s, full scans %d",
                sharing,
                _read("pages_shared"),
                scans,
            )
            last_report = now
        if now - t0 > timeout_s:
            raise CaptureError(f"KSM pages_sharing did not settle within {timeout_s:.0f} s (last {sharing})")
        time.sleep(1.0)


def validate_ksm(n_guests: int, memory_mib: int, settle_timeout_s: float, boot_timeout_s: float) -> KsmResult:
    """Boot ``n_guests`` busybox guests, let KSM merge them, and compare with xpipe's prediction."""
    image = guest_image("busybox")
    work = make_scratch("xpipe-ksm")
    guests = [
        Guest(
            GuestConfig(
                f"ksm-{i + 1}",
                memory_mib,
                image.kernel,
                image.initrd,
                image.append("dup"),
                image.root_disk,
                1,
                work / f"ksm-{i + 1}",
            )
        )
        for i in range(n_guests)
    ]
    try:
        with host_settings():
            try:
                for g in guests:  # THP is off before any guest RAM is touched
                    log.info("%s: booting (%d MiB)", g.name, memory_mib)
                    g.start()
                for g in guests:
                    g.wait_ready(boot_timeout_s)
                    log.info("%s: up after %.1f s", g.name, g.elapsed_s())
                _write(KSM / "run", "1")
                _wait_settled(settle_timeout_s)
                for g in guests:
                    g.pause()
                sample = sample_paused(guests)
                # Already paused: all guests stay still. RAM block order, as the pagemap's.
                hashes = [g.page_hashes(pause=False)[1] for g in guests]
            finally:
                stop_all(guests)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    backed, everything = sample.pages(hashes)
    _, counts = np.unique(backed, return_counts=True)
    sharing = sample.pages_sharing
    result = KsmResult(
        sharing,
        sample.pages_shared,
        len(backed),
        len(counts),
        duplicated=int(np.count_nonzero(counts > 1)),
        zero=int(np.count_nonzero(backed == ZERO_HASH)),
        predicted_all_mergeable=int(len(everything) - len(np.unique(everything))),
    )
    log.info(
        "host-backed guest pages %d (%d zero), distinct contents %d, predicted saved %d, KSM pages_sharing %d",
        result.present,
        result.zero,
        result.distinct,
        result.predicted,
        sharing,
    )
    return result
