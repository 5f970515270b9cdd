"""xpipe's sharing prediction against the host kernel's KSM: three small busybox guests, server
guests at every snapshot, and the pagemap and prediction rules on their own."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from guests import require, require_qemu

from xpipe.capture import ksm
from xpipe.capture.ksm import KSM, KSM_SETTINGS, THP, validate_ksm


def _state() -> dict[str, str]:
    out = {n: (KSM / n).read_text() for n in ("run", *KSM_SETTINGS)}
    out["thp"] = THP.read_text()
    return out


@pytest.mark.slow
def test_ksm_agrees_with_prediction() -> None:
    require_qemu()
    require((KSM / "run").exists() and os.geteuid() == 0, "KSM check needs root and host KSM")
    before = _state()
    result = validate_ksm(n_guests=3, memory_mib=256, settle_timeout_s=240, boot_timeout_s=120)
    assert _state() == before  # every setting put back
    assert result.predicted > 10_000
    assert abs(1 - result.ratio) <= 0.10, result
    # Counting QEMU's firmware/ROM blocks too, the prediction is what KSM scans: closer still.
    assert abs(1 - result.ksm_pages_sharing / result.predicted_all_mergeable) <= 0.05, result


SERVER_SPEC = """\
description: validate-ksm test, two server guests
guest: server
times_s: [170, 180]
batch_size: 2
boot_timeout_s: 300
domains:
  - {id: pg-bookworm, workload: postgres, memory_mib: 1024}
  - {id: redis-trixie, workload: redis, memory_mib: 1024, release: trixie}
"""


@pytest.mark.slow
def test_validate_ksm_on_debian_server_guests_at_every_snapshot(tmp_path) -> None:
    require_qemu()
    require((KSM / "run").exists() and os.geteuid() == 0 and bool(shutil.which("debootstrap")),
            "KSM check on server guests needs root, host KSM and debootstrap")
    spec = tmp_path / "spec.yaml"
    spec.write_text(SERVER_SPEC)
    before = _state()
    r = subprocess.run([sys.executable, "-m", "xpipe.capture", "validate-ksm", "--guest", "debian",
                        "--spec", str(spec), "-o", str(tmp_path / "out")], capture_output=True, text=True,
                       check=False)
    assert _state() == before  # every setting put back
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert r.stdout.splitlines()[-1] == f"figure: {tmp_path / 'out/ksm.png'}"  # the figure last
    assert (tmp_path / "out/ksm.png").stat().st_size > 10_000
    rows = list(csv.DictReader((tmp_path / "out/ksm.csv").read_text().splitlines()))
    assert [float(x["time_s"]) for x in rows] == [170.0, 180.0]
    for x in rows:  # every snapshot compared once KSM settled on the paused guests
        assert x["settled"] == "true" and int(x["predicted_sharing_all_mergeable"]) > 100_000
        assert abs(1 - int(x["ksm_pages_sharing"]) / int(x["predicted_sharing_all_mergeable"])) <= 0.05, x


def test_backed_frames_leave_out_the_shared_zero_page(tmp_path, monkeypatch):
    """The pagemap rule without root or QEMU: present or swapped pages count, a frame mapping
    the kernel's zero page does not (KSM scans anonymous pages only); a KSM page mapped twice
    is still backed."""
    present, swapped = 1 << 63, 1 << 62
    entries = [present | 100, present | 7, present | 7, swapped, 0, present | 200, present | 300, present | 300]
    path = tmp_path / "pagemap"
    path.write_bytes(np.array(entries, dtype="<u8").tobytes())
    flags = {7: ksm.KPF_ZERO_PAGE, 300: 1 << 21}  # the zero page; a KSM page
    asked = []
    monkeypatch.setattr(ksm, "_kpageflags", lambda pfn: asked.append(pfn) or flags.get(pfn, 0))
    with open(path, "rb") as f:
        backed = ksm._backed(f, 0, len(entries) * ksm.HOST_PAGE)
    assert backed.tolist() == [True, False, False, True, False, True, True, True]
    assert sorted(asked) == [7, 300]  # only frames mapped more than once are looked up


def test_ksm_record_predicts_backed_pages_minus_distinct_contents():
    u = np.uint64
    sample = ksm.KsmAtSnapshot(
        pages_sharing=2, pages_shared=2, full_scans=5,
        backed=[np.array([True, True, True, False]), np.array([True, False, True, True])],
        extra=[np.array([9], dtype=u), np.array([9], dtype=u)], settled=True)
    hashes = [np.array([1, 2, 2, 3], dtype=u), np.array([1, 4, 5, 6], dtype=u)]
    record = sample.entry(hashes, ["a", "b"])
    # backed: 1, 2, 2 and 1, 5, 6: 6 pages, 4 contents; with the firmware pages 9, 9: 8 and 5
    assert record == {"guests": ["a", "b"], "pages_sharing": 2, "pages_shared": 2, "full_scans": 5,
                      "backed_pages": 6, "predicted_sharing": 2, "predicted_sharing_all_mergeable": 3,
                      "settled": True}
