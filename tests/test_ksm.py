"""xpipe's sharing prediction against the host kernel's KSM on three small busybox guests."""

from __future__ import annotations

import os

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
