"""Errors raised by the capture side; the command line prints them without a traceback."""

from __future__ import annotations


class CaptureError(RuntimeError):
    """A capture could not be made (missing tool, guest failed to boot, bad argument...)."""
