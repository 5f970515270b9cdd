"""Real capture: boot QEMU/TCG guests, snapshot their memory, record their disk reads.

``run_capture`` writes a bundle (docs/capture-bundle.md); ``validate_ksm`` compares the
sharing xpipe predicts from snapshots with what the host kernel's KSM merges.
The CLI entry points are in :mod:`xpipe.capture.commands`.
"""

from xpipe.capture.errors import CaptureError
from xpipe.capture.spec import CaptureSpec, DomainSpec, preset

__all__ = ["CaptureError", "CaptureSpec", "DomainSpec", "preset", "run_capture", "validate_ksm"]


def __getattr__(name: str):
    # Lazy: importing the package (for the CLI parser) must not need numpy/QEMU yet.
    if name == "run_capture":
        from xpipe.capture.capture import run_capture

        return run_capture
    if name == "validate_ksm":
        from xpipe.capture.ksm import validate_ksm

        return validate_ksm
    raise AttributeError(name)
