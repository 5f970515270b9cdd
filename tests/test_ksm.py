"""xpipe's sharing prediction against the host kernel's KSM on three small busybox guests."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys

import pytest
from guests import require, require_qemu

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
