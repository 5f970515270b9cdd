"""What tests that boot QEMU guests need before they start."""

import os
import shutil
from pathlib import Path

import pytest


def require(ok: bool, what: str) -> None:
    """Unless ``ok``: fail under CI (which runs scripts/install-capture-deps.sh as root), skip elsewhere."""
    if ok:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what}: CI must run scripts/install-capture-deps.sh as root")
    pytest.skip(f"{what}: run scripts/install-capture-deps.sh")


def require_qemu() -> None:
    require(bool(shutil.which("qemu-system-x86_64")) and Path("/bin/busybox").exists(),
            "capture dependencies missing")
