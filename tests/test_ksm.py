"""xpipe's sharing prediction against the host kernel's KSM on three small busybox guests."""

from __future__ import annotations

import os
import shutil

import pytest

from xpipe.capture.ksm import KSM, THP, validate_ksm


def _state() -> dict[str, str]:
    out = {n: (KSM / n).read_text() for n in ("run", "pages_to_scan", "sleep_millisecs")}
    out["thp"] = THP.read_text()
    return out


@pytest.mark.slow
def test_ksm_agrees_with_prediction() -> None:
    missing = not shutil.which("qemu-system-x86_64") or not (KSM / "run").exists() or os.geteuid() != 0
    if missing:
        if os.environ.get("CI"):
            pytest.fail("KSM check needs root, host KSM and scripts/install-capture-deps.sh")
        pytest.skip("KSM check needs root, host KSM and QEMU")
    before = _state()
    result = validate_ksm(n_guests=3, memory_mib=256, settle_timeout_s=240, boot_timeout_s=120)
    assert _state() == before  # every setting put back
    assert result.predicted > 10_000
    assert abs(1 - result.ratio) <= 0.10, result
    # Counting QEMU's firmware/ROM blocks too, the prediction is what KSM scans: closer still.
    assert abs(1 - result.ksm_pages_sharing / result.predicted_all_mergeable) <= 0.05, result
