"""Guest memory streamed from QEMU and hashed on the fly: no raw dump on disk, RAM above the PC's
PCI hole read where QEMU maps it (gfn 0x100000 on), kpageflags lined up with the same frames.
Needs scripts/install-capture-deps.sh; the tests that boot guests are marked slow."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Self

import numpy as np
import pytest
import yaml
from guests import require_qemu

from xpipe.capture import CaptureError, run_capture
from xpipe.capture.guest import HIGH_RAM_GFN, Guest, GuestConfig, ram_frames, ram_ranges
from xpipe.capture.host import require_tool, scratch_dir
from xpipe.capture.images import guest_image
from xpipe.capture.qmp import QMP
from xpipe.capture.spec import load_spec
from xpipe.hashing import ZERO_HASH
from xpipe.normalise import normalise_frames
from xpipe.readers.compact import read_page_hashes, read_u64
from xpipe.readers.manifest import load_manifest
from xpipe.readers.memdump import read_pmemsave

KPF_BUDDY = 1 << 10
KPF_NOPAGE = 1 << 20
#: From 3.5 GiB on, a PC guest has RAM above 4 GiB: 3 GiB below the hole, the rest from 4 GiB.
BIG_MIB = 3584


def memory_tree(mib: int, tmp_path: Path) -> tuple[str, int]:
    """QEMU's `info mtree` and RAM size for a PC guest of ``mib`` MiB (stopped before it runs)."""
    sock = tmp_path / f"q{mib}.sock"
    proc = subprocess.Popen([require_tool("qemu-system-x86_64"), "-accel", "tcg", "-machine", "pc", "-m", str(mib),
                             "-nodefaults", "-display", "none", "-S", "-qmp", f"unix:{sock},server=on,wait=off"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        qmp = QMP(sock)
        text = qmp.command("human-monitor-command", **{"command-line": "info mtree"})
        size = qmp.command("query-memory-size-summary")["base-memory"]
        qmp.command("quit")
        qmp.close()
    finally:
        proc.kill()
        proc.wait()
    return text, size


@pytest.mark.parametrize("mib, ranges", [
    (256, [(0, 256 << 20)]),
    (3072, [(0, 3 << 30)]),  # below 3.5 GiB all RAM fits under the hole
    (BIG_MIB, [(0, 3 << 30), (4 << 30, 512 << 20)]),
    (8192, [(0, 3 << 30), (4 << 30, 5 << 30)]),
])
def test_ram_ranges_are_where_qemu_maps_the_ram(tmp_path, mib, ranges):
    require_qemu()
    text, size = memory_tree(mib, tmp_path)
    assert size == mib << 20
    assert ram_ranges(text, size) == ranges
    gfn = ram_frames(ranges)
    assert len(gfn) == mib * 256 and (np.diff(gfn) > 0).all()
    with pytest.raises(CaptureError, match=r"^QEMU's memory tree \(info mtree\) maps no RAM block of the "
                                           rf"guest's {size + 4096} bytes whole \(RAM regions found: pc\.ram"):
        ram_ranges(text, size + 4096)


def test_pages_file_with_a_memory_map_round_trips_and_refuses_damage(tmp_path):
    from xpipe.bundle import PAGES_HEADER, pages_bytes, write_pages
    from xpipe.errors import InputError
    from xpipe.readers.delta import read_delta_snapshot

    gfn = ram_frames([(0, 3 * 4096), (4 << 30, 2 * 4096)])
    hashes = np.arange(10, 15, dtype=np.uint64)
    kind, path = write_pages(tmp_path / "s0.xxh", hashes, None, True, gfn)
    assert kind == "pages" and np.array_equal(read_page_hashes(path)[0], gfn)
    assert np.array_equal(read_page_hashes(path)[1], hashes)
    # Frames 0..N-1 need no map: the file is the hashes alone, as ever.
    assert pages_bytes(hashes, np.arange(5)) == hashes.astype("<u8").tobytes()
    # A delta names frames by index: it applies to the mapped snapshot it was made from.
    later = hashes.copy()
    later[4] = 99
    kind, delta = write_pages(tmp_path / "s1.xxh", later, hashes, True, gfn)
    assert kind == "delta"
    got_gfn, got = read_delta_snapshot(delta, read_page_hashes(path))
    assert np.array_equal(got_gfn, gfn) and np.array_equal(got, later)
    data = pages_bytes(hashes, gfn)
    bad = {
        "short.xxh": (data[:-8], r"offset 48: expected 5 page hashes \(the memory map's frames\), found 4"),
        "version.xxh": (data[:8] + b"\x02" + data[9:], "offset 8: expected pages file version 1, found 2"),
        "order.xxh": (data[:16] + data[32:48] + data[16:32] + data[48:],
                      "offset 32: expected memory ranges of one or more frames, increasing and apart"),
        "header.xxh": (data[:PAGES_HEADER.size - 1], "offset 15: expected a 16-byte memory map header"),
    }
    for name, (content, message) in bad.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError, match=message):
            read_page_hashes(tmp_path / name)


class LargestFile:
    """Watches folders while a capture runs: the most space any file in them took."""

    def __init__(self, *patterns: tuple[Path, str]) -> None:
        self.patterns = patterns
        self.largest = (0, "")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(0.1):
            for folder, glob in self.patterns:
                for f in folder.glob(glob):
                    try:
                        st = f.lstat()
                    except OSError:
                        continue
                    if f.is_file():  # space taken: the flags disk is sparse, one slot used at a time
                        self.largest = max(self.largest, (st.st_blocks * 512, str(f)))

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


@pytest.mark.slow
def test_guest_above_the_pci_hole_captured_whole_without_a_dump(tmp_path):
    require_qemu()
    spec_file = tmp_path / "big.yaml"
    spec_file.write_text(yaml.safe_dump({
        "description": "a busybox guest with RAM above 4 GiB", "guest": "busybox", "times_s": [40, 45],
        "boot_timeout_s": 120, "domains": [{"id": "big-1", "workload": "dup", "memory_mib": BIG_MIB}]}))
    out = tmp_path / "out"
    with LargestFile((out, "**/*"), (scratch_dir(), "xpipe-capture-*/**/*")) as watch:
        run_capture(load_spec(spec_file), out)
    frames = BIG_MIB * 256
    # The largest file written is one snapshot's kpageflags (8 bytes per frame number, the PCI
    # hole's included): never the 3.5 GiB of RAM.
    assert 0 < watch.largest[0] <= 8 * (HIGH_RAM_GFN + frames - 3 * 2**18) + 2**17, watch.largest

    manifest = load_manifest(out / "manifest.yaml")
    (domain,) = manifest.domains
    blocks = read_u64(out / yaml.safe_load((out / "manifest.yaml").read_text())["disks"]["busybox-data"]["block_hashes"])
    for snap in domain.snapshots:
        gfn, hashes = read_page_hashes(snap.path)
        assert len(gfn) == len(hashes) == frames  # all RAM, once
        below = np.arange(3 * 2**18)
        above = HIGH_RAM_GFN + np.arange(frames - len(below))
        assert np.array_equal(gfn, np.concatenate([below, above]))
        flags = read_u64(snap.kpageflags)
        assert len(flags) == int(above[-1]) + 1  # one word per frame number, up to the last
        assert (flags[3 * 2**18 : HIGH_RAM_GFN] & KPF_NOPAGE).all()  # the guest has no page in the hole
        assert not (flags[gfn] & KPF_NOPAGE).any()
        high = gfn >= HIGH_RAM_GFN
        free = (flags[gfn] & KPF_BUDDY) != 0
        zero = hashes == ZERO_HASH
        # init_on_free=1: the frames the guest says are free hold zeros, above 4 GiB too
        # (the flags are copied just before the memory is read, so a few may have changed).
        assert free[high].sum() > 10000 and zero[high & free].mean() > 0.99
        assert zero[~high & free].mean() > 0.99
        # The kernel allocates from the top: the files the workload copied from the disk sit above
        # 4 GiB, so frames there hold the disk's blocks.
        assert np.isin(hashes[high], blocks[blocks != ZERO_HASH]).sum() > 1000
    table = normalise_frames(domain)  # stage 1 reads it: frames, kpageflags by frame number
    assert table.height == 2 * frames and table["gfn"].max() == HIGH_RAM_GFN + frames - 3 * 2**18 - 1
    assert table["kpageflags"].null_count() == 0


@pytest.mark.slow
def test_streamed_hashes_equal_a_dump_of_the_paused_guest(tmp_path):
    """What page_hashes reads through the FIFO is what QEMU's pmemsave writes to a file."""
    require_qemu()
    image = guest_image("busybox")
    guest = Guest(GuestConfig("stream-1", 128, image.kernel, image.initrd, image.append("dup"), image.root_disk, 1,
                              tmp_path / "work"))
    try:
        guest.start()
        guest.wait_ready(120)
        time.sleep(2)  # the workload is copying and writing: pages change until paused
        guest.pause()
        gfn, hashes = guest.page_hashes(pause=False)
        guest.pmemsave(tmp_path / "ram.raw", pause=False)
        dumped_gfn, dumped = read_pmemsave(tmp_path / "ram.raw")
    finally:
        guest.stop()
    assert np.array_equal(gfn, dumped_gfn) and np.array_equal(hashes, dumped)
    assert 1000 < np.count_nonzero(hashes != ZERO_HASH) < len(hashes)
    assert not list((tmp_path / "work").glob("*.raw"))
