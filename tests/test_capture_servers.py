"""End-to-end capture of server guests (systemd as PID 1, real Debian services under their
load generators, each release booting its own kernel) through xpipe's own code.

Needs scripts/install-capture-deps.sh and root (debootstrap builds one image per release the
first time, a few minutes each; later runs take them from $XPIPE_CACHE). Marked slow: about
four minutes on 2 cores once the images exist.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from guests import require

from xpipe.capture import run_capture
from xpipe.capture.ksm import KSM, THP
from xpipe.capture.servers import server_image
from xpipe.capture.spec import CaptureSpec, DomainSpec
from xpipe.readers.compact import read_bytes, read_u64
from xpipe.readers.manifest import load_manifest

#: (id, workload, release): two releases, two services, 1 GiB each.
GUESTS = [("pg-bookworm", "postgres", "bookworm"), ("redis-trixie", "redis", "trixie")]
TIMES = [210.0, 220.0]  # ready after 100-130 s on 2 busy cores; the first load rounds end well before
#: KSM merges the live guests during the capture, at ten times its default rate.
KSM_RATE = {"pages_to_scan": 1000, "sleep_millisecs": 20}
AGENT = re.compile(r"xpipe: agent pid1=(\S+) kernel=(\S+) os=(\S+) workload=(\S+)")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    require(bool(shutil.which("qemu-system-x86_64")) and bool(shutil.which("debootstrap"))
            and os.geteuid() == 0 and KSM.is_dir(), "server capture needs QEMU, debootstrap, root and KSM")
    before = host_state()
    spec = CaptureSpec(
        guest="server",
        domains=[DomainSpec(i, w, 1024, r) for i, w, r in GUESTS],
        times_s=TIMES,
        batch_size=2,
        boot_timeout_s=300.0,
        description="server capture test",
        ksm=KSM_RATE,
    )
    out = tmp_path_factory.mktemp("servers")
    run_capture(spec, out)
    assert host_state() == before  # KSM's run and rate, and THP, are put back
    return out


def host_state() -> dict[str, str]:
    return {p.name: p.read_text() for p in (KSM / "run", KSM / "pages_to_scan", KSM / "sleep_millisecs", THP)}


@pytest.fixture(scope="module")
def manifest(bundle: Path) -> dict:
    return yaml.safe_load((bundle / "manifest.yaml").read_text())


def console(bundle: Path, d: dict) -> str:
    return read_bytes(bundle / d["console"]).decode(errors="replace")


@pytest.mark.slow
def test_systemd_is_pid1_and_each_release_boots_its_own_kernel(bundle: Path, manifest: dict) -> None:
    for d, (ident, workload, release) in zip(manifest["domains"], GUESTS):
        assert d["id"] == ident
        agent = AGENT.findall(console(bundle, d))
        assert len(agent) == 1, console(bundle, d)[-2000:]
        pid1, kernel, os_id, said = agent[0]
        assert pid1 == "systemd"
        assert os_id == f"debian-{release}" and said == workload
        image = server_image(release)  # cached: the image the guest booted
        assert kernel == image.kernel_version  # uname -r is the release's own kernel package
        assert d["disk"] == f"server-{release}" and d["os"] == image.os
    kernels = {AGENT.search(console(bundle, d)).group(2) for d in manifest["domains"]}
    assert len(kernels) == 2  # bookworm and trixie ship different kernels


@pytest.mark.slow
def test_service_answered_its_load_generator(bundle: Path, manifest: dict) -> None:
    for d, (_, workload, _) in zip(manifest["domains"], GUESTS):
        text = console(bundle, d)
        assert f"xpipe-server {workload} ready at" in text
        ok = re.findall(rf"xpipe-load {workload} round \d+ ok at [\d.]+: (.*)", text)
        assert ok, text[-3000:]
        assert f"xpipe-load {workload} round 1 failed" not in text
        if workload == "postgres":
            assert "tps = " in ok[0]
        if workload == "redis":
            assert "requests per second" in ok[0]


@pytest.mark.slow
def test_frames_kpageflags_and_reads(bundle: Path, manifest: dict) -> None:
    m = load_manifest(bundle / "manifest.yaml")  # the reader accepts the bundle, `os` included
    assert sorted(m.disks) == ["server-bookworm", "server-trixie"]
    for d, md in zip(manifest["domains"], m.domains):
        frames = d["memory_mib"] * 256
        assert d["memory_mib"] == 1024 and md.os == d["os"]
        assert [s["time_s"] for s in d["snapshots"]] == TIMES
        for s in d["snapshots"]:
            assert len(read_u64(bundle / s["pages"])) == frames
            flags = read_u64(bundle / s["kpageflags"])
            assert len(flags) == frames and (flags != 0).any()
        reads = read_bytes(bundle / d["reads"]).decode().splitlines()
        assert len(reads) > 100  # systemd, the services and their tools come from the root disk
        size = manifest["disks"][d["disk"]]["size_bytes"]
        for line in reads:
            off, n = map(int, re.search(r"offset (\d+) bytes (\d+)", line).groups())
            assert off + n <= size


@pytest.mark.slow
def test_ksm_ran_on_the_live_guests_and_agrees_with_the_prediction(bundle: Path, manifest: dict) -> None:
    m = load_manifest(bundle / "manifest.yaml")
    records = [[s.ksm for s in d.snapshots] for d in m.domains]
    assert records[0] == records[1]  # one record per snapshot of the batch, in both guests
    scans = [k.full_scans for k in records[0]]
    assert scans == sorted(scans) and scans[0] >= 2  # KSM kept scanning between snapshots
    for k in records[0]:
        assert k.guests == tuple(i for i, _, _ in GUESTS)
        # KSM can only merge what is there to merge; on two guests of free memory zeroed on
        # free it finds nearly all of it (about 0.99 of the prediction when measured)
        assert 0 < k.pages_sharing <= k.predicted_sharing_all_mergeable
        assert k.pages_sharing >= 0.9 * k.predicted_sharing, k
        assert k.backed_pages <= 2 * 1024 * 256
