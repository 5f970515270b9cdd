"""What tests that boot QEMU guests need before they start."""

import os
import shutil
from pathlib import Path

import pytest


def require_qemu() -> None:
    """Fail under CI (which installs the capture dependencies), skip elsewhere, when QEMU is missing."""
    if shutil.which("qemu-system-x86_64") and Path("/bin/busybox").exists():
        return
    if os.environ.get("CI"):
        pytest.fail("capture dependencies missing: CI must run scripts/install-capture-deps.sh")
    pytest.skip("capture dependencies missing: run scripts/install-capture-deps.sh")
