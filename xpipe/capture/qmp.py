"""A minimal synchronous QMP client (QEMU Machine Protocol over a unix socket)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

from xpipe.capture.errors import CaptureError


class QMP:
    """One QMP connection; ``command`` sends a command and returns its ``return`` value."""

    def __init__(self, path: Path, timeout_s: float = 10.0) -> None:
        self.path = path
        self.sock = connect_unix(path, timeout_s)
        self.file = self.sock.makefile("rwb", buffering=0)
        self._read()  # greeting
        self.command("qmp_capabilities")

    def _read(self) -> dict[str, Any]:
        while True:
            line = self.file.readline()
            if not line:
                raise CaptureError(f"QMP connection {self.path} closed")
            msg = json.loads(line)
            if "event" not in msg:  # events are not replies
                return msg

    def command(self, name: str, timeout_s: float = 120.0, **arguments: Any) -> Any:
        msg: dict[str, Any] = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self.sock.settimeout(timeout_s)
        self.file.write(json.dumps(msg).encode() + b"\n")
        reply = self._read()
        if "error" in reply:
            raise CaptureError(f"QMP {name} failed: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")

    def close(self) -> None:
        try:
            self.file.close()
            self.sock.close()
        except OSError:
            pass


def connect_unix(path: Path, timeout_s: float = 10.0) -> socket.socket:
    """Connect to a unix socket QEMU creates shortly after it starts."""
    deadline = time.monotonic() + timeout_s
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(path))
            sock.settimeout(timeout_s)
            return sock
        except OSError as e:
            sock.close()
            if time.monotonic() > deadline:
                raise CaptureError(f"could not connect to {path}: {e}") from e
            time.sleep(0.05)
