"""`guest: image`: captures of a user's own disk image, with and without xpipe's guest agent.

The foreign image is made here: a raw ext4 disk holding busybox, a plain /sbin/init and some
files it reads, booted by the host's Debian kernel and initrd (`boot: kernel`); a qcow2 copy
of it is captured without the agent, a copy with scripts/guest-agent/xpipe-agent started by
its init is captured with it. Needs scripts/install-capture-deps.sh; the tests that boot
guests are marked slow (about a minute and a half together; qemu-img is needed too).
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from guests import require, require_qemu

from xpipe.capture import CaptureError, run_capture
from xpipe.capture.ext4 import pack_ext4
from xpipe.capture.host import find_kernel, require_tool
from xpipe.capture.spec import SpecError, load_spec
from xpipe.capture.userimage import AGENT_DIR
from xpipe.extract import page_types
from xpipe.hashing import ZERO_HASH
from xpipe.normalise import normalise_disk, normalise_frames
from xpipe.readers.compact import read_page_hashes, read_u64
from xpipe.readers.manifest import load_manifest

MARK = "foreign-workload-ran"
INIT = """#!/bin/sh
# The image's own init: no xpipe in it but the agent, when installed.
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
echo "foreign init up"
cat /data/* > /dev/null
[ -x /usr/local/sbin/xpipe-agent ] && /usr/local/sbin/xpipe-agent > /dev/console 2>&1 &
while :; do sleep 3600; done
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def foreign_image(folder: Path, agent: bool) -> Path:
    """A raw ext4 disk that boots with root=/dev/vda: busybox, /sbin/init, files in /data."""
    tree = folder / ("tree-agent" if agent else "tree")
    for d in ("bin", "sbin", "dev", "proc", "sys", "run", "tmp", "etc", "data", "usr/local/sbin"):
        (tree / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", tree / "bin/busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True).stdout.split()
    for a in applets:
        if not (tree / "bin" / a).exists():
            (tree / "bin" / a).symlink_to("busybox")
    (tree / "sbin/init").write_text(INIT)
    (tree / "sbin/init").chmod(0o755)
    kernel = find_kernel()
    for f in sorted((kernel.modules / "kernel" / "fs").rglob("*.ko"))[:40]:
        shutil.copyfile(f, tree / "data" / f.name)
    if agent:  # the install docs/capture.md gives for an image without systemd
        shutil.copy2(AGENT_DIR / "xpipe-agent", tree / "usr/local/sbin/xpipe-agent")
    image = folder / ("foreign-agent.img" if agent else "foreign.img")
    pack_ext4(tree, image, 48, "0b5e8f40-31c6-4b1e-9d1e-6a0f5d7c2b11", "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f")
    return image


def write_spec(path: Path, image: Path, fmt: str, *, agent: bool, times: list[float],
               workload: str | None = None, boot: str = "kernel", mib: int = 256) -> Path:
    kernel = find_kernel()
    im = {"path": str(image), "format": fmt, "boot": boot, "agent": agent}
    if boot == "kernel":
        im |= {"kernel": str(kernel.vmlinuz), "initrd": str(kernel.initrd),
               "append": "console=ttyS0 init_on_free=1 panic=1 root=/dev/vda rw rootfstype=ext4"}
    dom = {"id": "foreign-1", "memory_mib": mib} | ({"workload": workload} if workload else {})
    path.write_text(yaml.safe_dump({"description": "a foreign image", "guest": "image", "image": im,
                                    "times_s": times, "boot_timeout_s": 120, "domains": [dom]}))
    return path


def check_bundle(out: Path, mib: int, flags: bool) -> tuple[dict, object]:
    """The bundle is valid, stage 1 reads every frame, and kpageflags are there or not."""
    manifest = load_manifest(out / "manifest.yaml")
    (domain,) = manifest.domains
    raw = yaml.safe_load((out / "manifest.yaml").read_text())
    (d,) = raw["domains"]
    assert len(d["snapshots"]) == 2
    for s in domain.snapshots:
        _, hashes = read_page_hashes(s.path)
        assert len(hashes) == mib * 256
        assert (s.kpageflags is not None) == flags
    table = normalise_frames(domain)
    assert table.height == 2 * mib * 256
    assert (table["kpageflags"].null_count() == 0) if flags else (table["kpageflags"].null_count() == table.height)
    return raw, (manifest, table)


def require_qemu_img() -> None:
    require_qemu()
    require(bool(shutil.which("qemu-img")), "qemu-img (Debian package qemu-utils) missing")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    require_qemu_img()
    folder = tmp_path_factory.mktemp("foreign")
    plain = foreign_image(folder, agent=False)
    qcow = folder / "foreign.qcow2"
    subprocess.run([require_tool("qemu-img"), "convert", "-f", "raw", "-O", "qcow2", str(plain), str(qcow)],
                   check=True)
    foreign_image(folder, agent=True)
    return folder


@pytest.mark.slow
def test_qcow2_image_without_agent(images: Path, tmp_path: Path) -> None:
    image = images / "foreign.qcow2"
    before = sha256(image)
    # No agent says when the guest is up: the times count from QEMU's start and must cover the boot.
    spec = write_spec(tmp_path / "plain.yaml", image, "qcow2", agent=False, times=[40, 45])
    out = tmp_path / "out"
    run_capture(load_spec(spec), out)
    assert sha256(image) == before  # the user's image is never written
    raw, (manifest, table) = check_bundle(out, 256, flags=False)
    d = raw["domains"][0]
    assert d["workload"] == "none" and d["disk"] == "image-foreign"
    assert "foreign init up" in gzip.decompress((out / d["console"]).read_bytes()).decode(errors="replace")
    reads = gzip.decompress((out / d["reads"]).read_bytes()).decode().splitlines()
    assert len(reads) > 50 and all("blk_co_preadv" in r for r in reads)  # QEMU's trace, no agent needed
    # Page types from the contents alone: zero pages, and page cache where a frame equals a disk block.
    disk = normalise_disk(manifest.disks[d["disk"]])
    blocks = read_u64(out / raw["disks"][d["disk"]]["block_hashes"])
    assert raw["disks"][d["disk"]]["size_bytes"] == 48 << 20 == 8 * len(blocks) * 512  # the raw view
    last = table.filter(table["snapshot"] == table["snapshot"].max())
    assert np.isin(last["hash"].to_numpy(), blocks[blocks != ZERO_HASH]).sum() > 500  # /data was read
    typed = page_types(last.lazy(), disk.lazy()).collect()
    kinds = set(typed["page_type"].cast(str).to_list())
    assert {"zero"} <= kinds and len(kinds) >= 2, kinds


@pytest.mark.slow
def test_raw_image_with_agent_runs_workload_and_records_kpageflags(images: Path, tmp_path: Path) -> None:
    image = images / "foreign-agent.img"
    before = sha256(image)
    cmd = f"echo {MARK}; head -c 4194304 /dev/urandom > /tmp/x; sleep 1000"
    spec = write_spec(tmp_path / "agent.yaml", image, "raw", agent=True, times=[25, 30], workload=cmd)
    out = tmp_path / "out"
    run_capture(load_spec(spec), out)
    assert sha256(image) == before
    raw, _ = check_bundle(out, 256, flags=True)
    d = raw["domains"][0]
    assert d["workload"] == cmd
    assert MARK in gzip.decompress((out / d["console"]).read_bytes()).decode(errors="replace")
    for s in d["snapshots"]:
        flags = read_u64(out / s["kpageflags"])
        assert (flags & (1 << 10)).any()  # free (buddy) pages, as the kernel reported them
        assert 0 < s["guest_uptime_s"] < s["taken_at_s"]


@pytest.mark.slow
def test_bootloader_image_without_agent(images: Path, tmp_path: Path) -> None:
    """No -kernel: the BIOS boots the disk (this one has no boot sector, so the BIOS says so
    and waits); the BIOS's own reads of the disk are recorded and the memory captured. By
    `xpipe capture`, twice: the second run keeps what the first recorded."""
    image = images / "foreign.img"
    before = sha256(image)
    spec = write_spec(tmp_path / "bios.yaml", image, "raw", agent=False, times=[3, 5], boot="bootloader", mib=128)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "xpipe.cli", "capture", "--spec", str(spec), "-o", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "the disk's own bootloader" in first.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    assert again.returncode == 0 and "recorded before (complete.yaml); kept" in again.stderr, again.stderr
    assert sha256(image) == before
    raw, _ = check_bundle(out, 128, flags=False)
    reads = gzip.decompress((out / raw["domains"][0]["reads"]).read_bytes()).decode().splitlines()
    assert any(" offset 0 " in r for r in reads)  # the boot sector


# -- bad specs: one line naming the key ---------------------------------------------------------


def _error(spec: Path) -> str:
    with pytest.raises(SpecError) as e:
        load_spec(spec)
    text = str(e.value)
    assert "\n" not in text
    return text


def test_bad_image_specs_are_one_line_naming_the_key(tmp_path: Path) -> None:
    require_qemu_img()
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(1 << 20)
    base = {"guest": "image", "times_s": [10, 20], "domains": [{"id": "a", "memory_mib": 128}],
            "image": {"path": "disk.img", "format": "raw"}}
    spec = tmp_path / "s.yaml"

    def err(**change) -> str:
        raw = yaml.safe_load(yaml.safe_dump(base))
        for k, v in change.items():
            if k == "dom":
                raw["domains"][0] |= v
            elif k == "guest":
                raw["guest"] = v
            else:
                raw["image"] = {**raw["image"], **v} if v is not None else None
                if v is None:
                    del raw["image"]
        spec.write_text(yaml.safe_dump(raw))
        return _error(spec)

    assert "image.path" in err(image={"path": "missing.img"}) and "no such file" in err(image={"path": "nope"})
    e = err(image={"format": "qcow2"})
    assert "image.format" in e and "is raw (qemu-img info), not qcow2" in e
    e = err(dom={"workload": "stress-ng --vm 1"})
    assert "domains[0].workload" in e and "image.agent: true" in e
    assert "image.agnet: unknown key; did you mean 'agent'" in err(image={"agnet": True})
    assert "image.kernel" in err(image={"boot": "kernel"})
    assert "image.append" in err(image={"append": "quiet"})
    assert "image.format" in err(image={"format": "vmdk"})
    assert "image" in err(image=None)
    assert "domains[0].workload" in err(guest="busybox", image=None)  # other kinds need a workload
    e = err(guest="busybox", dom={"workload": "dup"})
    assert "image" in e and "guest: image only" in e
    # Otherwise fine: it loads, with the workload "none".
    spec.write_text(yaml.safe_dump(base))
    assert load_spec(spec).domains[0].workload == "none"


def test_agent_script_and_unit_are_shipped() -> None:
    script, unit = AGENT_DIR / "xpipe-agent", AGENT_DIR / "xpipe-agent.service"
    assert script.stat().st_mode & 0o111
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
    assert "ExecStart=/usr/local/sbin/xpipe-agent" in unit.read_text()


def test_run_capture_refuses_a_missing_image(tmp_path: Path) -> None:
    require_qemu_img()
    disk = tmp_path / "d.img"
    disk.write_bytes(b"\0" * 4096)
    spec = load_spec(write_spec(tmp_path / "s.yaml", disk, "raw", agent=False, times=[1, 2], boot="bootloader"))
    disk.unlink()
    with pytest.raises(CaptureError, match=r"image\.path: .*no such file"):
        run_capture(spec, tmp_path / "out")
