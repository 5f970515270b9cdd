"""Run a capture: boot guests in batches, snapshot them at fixed guest times, write the bundle."""

from __future__ import annotations

import logging
import os
import shutil
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from xpipe.bundle import disk_block_hashes, relative, u64_bytes, write_compact, write_manifest, write_pages
from xpipe.capture.errors import CaptureError
from xpipe.capture.guest import HIGH_RAM_GFN, Guest, GuestConfig, stop_all
from xpipe.capture.host import make_scratch, qemu_version
from xpipe.capture.images import GuestImage, guest_image
from xpipe.capture.progress import Progress
from xpipe.capture.spec import IMAGE_NO_WORKLOAD, CaptureSpec, DomainSpec
from xpipe.capture.userimage import UserImage, user_images
from xpipe.hashing import ZERO_HASH
from xpipe.readers.kdump import read_kdump

log = logging.getLogger(__name__)


#: Written last into each domain's folder of a finished batch: its manifest entry and what it
#: was recorded from. A capture started again keeps a batch only when all its domains have one
#: that matches the spec and names files that exist; anything else of the batch is redone.
COMPLETE = "complete.yaml"


def run_capture(spec: CaptureSpec, out: Path, compress: bool = True, name: str = "capture") -> Path:
    """Capture ``spec`` into bundle folder ``out``; returns the manifest path. ``name`` (the
    spec's) labels the progress lines. Batches already in ``out`` from an earlier run of the
    same spec are kept (see COMPLETE), the others recorded."""
    spec.validate()
    if spec.ksm is not None:  # before minutes of image building and hashing
        from xpipe.capture.ksm import check_host

        check_host("a capture with ksm")
    images, about = _domain_images(spec)
    out.mkdir(parents=True, exist_ok=True)
    batches = [spec.domains[i : i + spec.batch_size] for i in range(0, len(spec.domains), spec.batch_size)]
    progress = Progress(name, [[d.id for d in b] for b in batches], spec.times_s)
    kept = {}
    for b, batch in enumerate(batches):
        entries = _finished(out, spec, images, batch, compress)
        if entries is not None:
            kept[b] = entries
            progress.kept([d.id for d in batch])
    work = make_scratch("xpipe-capture")
    try:
        disks = {im.disk_name: im for im in images.values()}
        disk_entries = {disk: _write_disk(im, out, compress) for disk, im in disks.items()}
        with _ksm_running(spec, len(batches) - len(kept)):
            domains = _run_batches(spec, images, batches, kept, out, work, compress, progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = write_manifest(
        out,
        synthetic=False,
        description=f"{spec.description}. {about}; {qemu_version()}; snapshot times count from QEMU's start.",
        disks=disk_entries,
        domains=domains,
    )
    log.info("wrote %s (%d domains, %d snapshots each)", path, len(domains), len(spec.times_s))
    return path


def _ksm_running(spec: CaptureSpec, batches_left: int):
    """With the spec's ``ksm`` and batches to record: THP off, KSM scanning at its rate for
    the whole capture and every host setting put back afterwards (xpipe.capture.ksm.host_settings)."""
    if spec.ksm is None or not batches_left:
        return nullcontext()
    from xpipe.capture.ksm import start_ksm

    return start_ksm({k: str(spec.ksm[k]) for k in ("pages_to_scan", "sleep_millisecs")})


def _run_batches(spec, images, batches, kept, out, work, compress, progress) -> list[dict[str, Any]]:
    """Each batch's manifest entries, kept from an earlier run or recorded now."""
    domains: list[dict[str, Any]] = []
    for b, batch in enumerate(batches):
        ids = ", ".join(d.id for d in batch)
        if b in kept:
            log.info("batch %d/%d: %s recorded before (%s); kept", b + 1, len(batches), ids, COMPLETE)
            domains += kept[b]
            continue
        log.info("batch %d/%d: %s", b + 1, len(batches), ids)
        for d in batch:  # a batch interrupted before: its files go, and it is recorded again
            shutil.rmtree(out / d.id, ignore_errors=True)
        progress.batch_started()
        entries = _run_batch(spec, images, batch, out, work, compress, progress)
        for d, entry in zip(batch, entries):
            _write_complete(out / d.id, _recipe(spec, images, batch, d, compress), entry)
        progress.batch_finished()
        domains += entries
    return domains


def _recipe(spec: CaptureSpec, images: dict[str, Any], batch: list[DomainSpec], d: DomainSpec,
            compress: bool) -> dict[str, Any]:
    """What a domain's files were recorded from: equal recipes, equal captures (up to the
    guests' own timing)."""
    image = images[d.id]
    return {"guest": spec.guest, "image": image.root_disk.name,
            "kernel": image.kernel.name if image.kernel else "bootloader",
            "workload": d.workload, "memory_mib": d.memory_mib, "times_s": [float(t) for t in spec.times_s],
            "snapshot_format": spec.snapshot_format, "batch": [x.id for x in batch], "gzip": compress,
            **({"ksm": dict(spec.ksm)} if spec.ksm is not None else {}),
            **(image.recipe() if isinstance(image, UserImage) else {})}


def _write_complete(folder: Path, recipe: dict[str, Any], entry: dict[str, Any]) -> None:
    tmp = folder / f".{COMPLETE}.tmp"
    tmp.write_text(yaml.safe_dump({"recipe": recipe, "entry": entry}, sort_keys=False))
    os.replace(tmp, folder / COMPLETE)  # last, and whole: its presence means the domain is complete


def _finished(out: Path, spec: CaptureSpec, images: dict[str, Any], batch: list[DomainSpec],
              compress: bool) -> list[dict[str, Any]] | None:
    """The manifest entries of ``batch`` when an earlier run recorded all of it from the same
    recipe and every file they name is there; else None (the batch is recorded again)."""
    entries = []
    for d in batch:
        try:
            done = yaml.safe_load((out / d.id / COMPLETE).read_text())
        except (OSError, yaml.YAMLError):
            return None
        if not isinstance(done, dict) or done.get("recipe") != _recipe(spec, images, batch, d, compress):
            if (out / d.id / COMPLETE).exists():
                log.info("%s: recorded before from another spec; recording it again", d.id)
            return None
        entry = done.get("entry") or {}
        files = [entry.get("reads"), entry.get("console")] + [
            v for s in entry.get("snapshots", []) for k, v in s.items() if k not in ("time_s", "taken_at_s",
                                                                                    "guest_uptime_s")]
        if not all(isinstance(f, str) and (out / f).is_file() for f in files):
            return None
        entries.append(entry)
    return entries


def _domain_images(spec: CaptureSpec) -> tuple[dict[str, Any], str]:
    """Each domain's guest image (one per guest kind; server guests: one per release), and
    what the manifest's description says of them."""
    if spec.guest == "server":
        from xpipe.capture.servers import server_images

        return server_images(spec)
    if spec.guest == "image":
        return user_images(spec)
    image = guest_image(spec.guest)
    return {d.id: image for d in spec.domains}, f"Guest kernel {image.kernel.name}"


def _write_disk(image: GuestImage | UserImage, out: Path, compress: bool) -> dict[str, Any]:
    t0 = time.monotonic()
    # A user's qcow2 image is hashed as the raw disk the guest sees.
    with image.raw_disk(out) if isinstance(image, UserImage) else nullcontext(image.root_disk) as raw:
        hashes = disk_block_hashes(raw)
        size = raw.stat().st_size
    path = write_compact(out / "disks" / f"{image.disk_name}.blk.xxh", u64_bytes(hashes), compress)
    log.info("disk %s: %d blocks hashed in %.1f s", image.root_disk.name, len(hashes), time.monotonic() - t0)
    return {"block_hashes": relative(path, out), "size_bytes": size}


def _run_batch(
    spec: CaptureSpec,
    images: dict[str, Any],
    batch: list[DomainSpec],
    out: Path,
    work: Path,
    compress: bool,
    progress: Progress,
) -> list[dict[str, Any]]:
    """Boot ``batch`` side by side, each guest from its domain's image, snapshot them at the
    spec's times and return their manifest entries. Every guest started is stopped on the
    way out, whatever the way (signals are held off while they are)."""
    guests = [
        Guest(
            images[d.id].guest_config(d, len(spec.times_s), work / d.id)
            if isinstance(images[d.id], UserImage)
            else GuestConfig(
                d.id,
                d.memory_mib,
                images[d.id].kernel,
                images[d.id].initrd,
                images[d.id].append(d.workload),
                images[d.id].root_disk,
                len(spec.times_s),
                work / d.id,
            )
        )
        for d in batch
    ]
    snaps: dict[str, list[dict[str, Any]]] = {d.id: [] for d in batch}
    previous: dict[str, np.ndarray] = {}  # each guest's last page hashes: what a delta starts from
    try:
        for g in guests:
            log.info("%s: booting (%d MiB, %s)", g.name, g.cfg.memory_mib,
                     g.cfg.append if g.cfg.kernel else "the disk's own bootloader")
            g.start()
        for d, g in zip(batch, guests):
            if not g.cfg.agent:  # a user's image without the agent: nothing says when it is up
                log.info("%s: no agent; snapshots at times from QEMU's start, without kpageflags", g.name)
                continue
            uptime = g.wait_ready(spec.boot_timeout_s)
            log.info("%s: up after %.1f s (guest uptime %.1f s)", g.name, g.elapsed_s(), uptime)
            if isinstance(images[d.id], UserImage) and d.workload != IMAGE_NO_WORKLOAD:
                g.run_workload(d.workload)
                log.info("%s: workload started: %s", g.name, d.workload)
        for i, t in enumerate(spec.times_s):
            wait = max(t - g.elapsed_s() for g in guests)
            if wait > 0:
                if wait > 5:
                    log.info("workloads running; snapshot %d/%d at %.0f s in %.0f s",
                             i + 1, len(spec.times_s), t, wait)
                time.sleep(wait)
            elif wait < -1:
                log.warning("snapshot %d taken %.1f s late (guests too slow)", i, -wait)
            entries = _snapshot_all(guests, i, t, out, compress, len(spec.times_s), spec.snapshot_format,
                                    previous, ksm=spec.ksm)
            for g, entry in zip(guests, entries):
                snaps[g.name].append(entry)
                progress.snapshot(g.name, i, t)
    finally:
        stop_all(guests)
    entries = []
    for d, g in zip(batch, guests):
        reads = g.root_reads()
        log_text = "".join(line + "\n" for line in reads).encode()
        reads_path = write_compact(out / d.id / "reads.log", log_text, compress)
        console = write_compact(out / d.id / "console.log", g.console.read_bytes(), compress)
        log.info("%s: %d root-disk reads logged", d.id, len(reads))
        os_release = getattr(images[d.id], "os", None)  # server images name their release and kernel
        entries.append(
            {
                "id": d.id,
                "workload": d.workload,
                "memory_mib": d.memory_mib,
                "disk": images[d.id].disk_name,
                **({"os": os_release} if os_release else {}),
                "reads": relative(reads_path, out),
                "reads_start_epoch_s": round(g.start_epoch_s, 6),
                "console": relative(console, out),
                "snapshots": snaps[d.id],
            }
        )
    return entries


def _snapshot_all(
    guests: list[Guest],
    i: int,
    t: float,
    out: Path,
    compress: bool,
    n: int,
    snapshot_format: str,
    previous: dict[str, np.ndarray],
    ksm: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Snapshot ``i`` of every guest of a batch, as close together as possible: all kpageflags
    copies at once, then each guest's memory hashed as QEMU streams it (each guest paused only
    for its own), its files written before the next guest's turn.
    Format ``delta``: a snapshot after a guest's first is stored as the changes to its
    previous one (``previous``, by guest name, updated here) when that file is smaller.
    With ``ksm`` (the spec's: KSM scanning the live guests) all guests are paused together
    instead, KSM's counters read (once settled, with ``settle``), and each entry gets the
    batch's ``ksm`` record (xpipe.capture.ksm)."""
    t0 = time.monotonic()
    taken = []
    for g in guests:
        taken.append(g.elapsed_s())
        if g.cfg.agent:
            g.request_kpageflags(i)
    # A guest without the agent has no kpageflags and no uptime of its own to report.
    answers = [g.wait_kpageflags(i) if g.cfg.agent else (None, 0) for g in guests]
    if snapshot_format == "kdump-zlib":
        return _kdump_all(guests, i, t, out, compress, n, taken, answers)
    sample = None
    if ksm:
        from xpipe.capture.ksm import SETTLE_TIMEOUT_S, sample_paused

        for g in guests:
            g.pause()
        sample = sample_paused(guests, settle=bool(ksm.get("settle")),
                               timeout_s=float(ksm.get("settle_timeout_s", SETTLE_TIMEOUT_S)))
    entries, all_hashes = [], []
    for g, taken_at, (uptime, nbytes) in zip(guests, taken, answers):
        t1 = time.monotonic()
        gfn, hashes = g.page_hashes(pause=sample is None)
        all_hashes.append(hashes)
        streamed = time.monotonic() - t1
        if len(hashes) != g.cfg.frames:
            raise CaptureError(f"guest {g.name}: QEMU's RAM ranges hold {len(hashes)} frames, "
                               f"expected {g.cfg.frames} ({g.cfg.memory_mib} MiB)")
        flags = g.kpageflags(i, nbytes) if g.cfg.agent else None
        base = previous.get(g.name) if snapshot_format == "delta" else None
        kind, pages = write_pages(out / g.name / f"s{i}.xxh", hashes, base, compress, gfn)
        previous[g.name] = hashes
        kpf = write_compact(out / g.name / f"s{i}.kpf", u64_bytes(flags), compress) if flags is not None else None
        changed = f", {int(np.count_nonzero(base != hashes))} changed" if base is not None else ""
        high = int(np.count_nonzero(gfn >= HIGH_RAM_GFN))
        zero = int(np.count_nonzero(hashes == ZERO_HASH))
        log.info(
            "%s: snapshot %d/%d at %.1f s (guest uptime %s s): %d frames%s%s, %d zero, %d distinct non-zero; "
            "streamed in %.1f s; wrote %s %d bytes, kpageflags %s bytes",
            g.name,
            i + 1,
            n,
            taken_at,
            "?" if uptime is None else f"{uptime:.1f}",
            len(hashes),
            f" ({high} above 4 GiB)" if high else "",
            changed,
            zero,
            len(np.unique(hashes[hashes != ZERO_HASH])),
            streamed,
            kind,
            pages.stat().st_size,
            kpf.stat().st_size if kpf is not None else "no",
        )
        entries.append(
            {
                "time_s": float(t),
                "taken_at_s": round(taken_at, 3),
                **({"guest_uptime_s": uptime} if uptime is not None else {}),
                kind: relative(pages, out),
                **({"kpageflags": relative(kpf, out)} if kpf is not None else {}),
            }
        )
    if sample is not None:
        for g in guests:
            g.resume()
        record = sample.entry(all_hashes, [g.name for g in guests])
        log.info("KSM at snapshot %d/%d: pages_sharing %d (%d full scans); xpipe predicts %d for the same moment",
                 i + 1, n, record["pages_sharing"], record["full_scans"], record["predicted_sharing"])
        for entry in entries:  # a copy each: the manifest's YAML then has no anchors
            entry["ksm"] = {**record, "guests": list(record["guests"])}
    log.info("snapshot %d/%d of %d guests took %.1f s", i + 1, n, len(guests), time.monotonic() - t0)
    return entries


def _kdump_all(guests: list[Guest], i: int, t: float, out: Path, compress: bool, n: int,
               taken: list[float], answers: list[tuple[float, int]]) -> list[dict[str, Any]]:
    """Snapshot ``i`` kept as QEMU's kdump-zlib dump of each guest (dump-guest-memory, the
    guest paused for it), read back once here so a dump QEMU wrote badly fails the capture."""
    entries = []
    for g, taken_at, (uptime, nbytes) in zip(guests, taken, answers):
        dump = out / g.name / f"s{i}.kdump"
        dump.parent.mkdir(parents=True, exist_ok=True)
        g.pause()
        try:
            g.qmp.command("dump-guest-memory", paging=False, protocol=f"file:{dump}", format="kdump-zlib")
        finally:
            g.qmp.command("cont")
        _, hashes = read_kdump(dump)
        extra: dict[str, Any] = {}
        if g.cfg.agent:
            kpf = write_compact(out / g.name / f"s{i}.kpf", u64_bytes(g.kpageflags(i, nbytes)), compress)
            extra = {"guest_uptime_s": uptime, "kpageflags": relative(kpf, out)}
        log.info("%s: snapshot %d/%d at %.1f s: kdump-zlib, %.1f MiB, %d frames, %d zero", g.name, i + 1, n,
                 taken_at, dump.stat().st_size / 2**20, len(hashes), int(np.count_nonzero(hashes == ZERO_HASH)))
        entries.append({"time_s": float(t), "taken_at_s": round(taken_at, 3),
                        "kdump": relative(dump, out), **extra})
    return entries
