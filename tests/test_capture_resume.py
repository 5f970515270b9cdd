"""`xpipe capture` run as a command: progress lines, no QEMU left after any signal, and a capture
interrupted and started again keeps the batches it had finished. Needs
scripts/install-capture-deps.sh; the tests boot guests and are marked slow."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from guests import require_qemu

from xpipe.capture.capture import COMPLETE
from xpipe.capture.host import scratch_dir
from xpipe.normalise import normalise_frames
from xpipe.readers.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[1]
SPEC = {
    "description": "two busybox guests, one at a time",
    "guest": "busybox",
    "times_s": [20, 24],
    "batch_size": 1,
    "boot_timeout_s": 120,
    "domains": [{"id": "first-1", "workload": "dup", "memory_mib": 128},
                {"id": "second-1", "workload": "idle", "memory_mib": 128}],
}


def start(spec: Path, out: Path, log: Path) -> subprocess.Popen:
    with open(log, "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "xpipe.capture", "capture", "--spec", str(spec), "-o", str(out)],
                                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)


def qemus_of(capture_pid: int, name: str = "") -> list[int]:
    """Pids of the QEMU processes a capture started: their files are in its scratch folder,
    named by its pid (and, given ``name``, the guest's)."""
    marker = f"{scratch_dir()}/xpipe-capture-{capture_pid}-".encode()
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"qemu-system-x86_64") and any(marker in c for c in cmd) \
                and (not name or name.encode() in cmd):
            found.append(int(pid))
    return found


def wait_for(what, timeout_s: float, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        assert proc.poll() is None, f"the capture ended early ({proc.returncode}):\n{log.read_text()}"
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout_s} s:\n{log.read_text()}")


def gone(pid: int, timeout_s: float = 15.0) -> list[int]:
    """The capture's QEMU processes still there after ``timeout_s`` (waiting for them to go)."""
    deadline = time.monotonic() + timeout_s
    while qemus_of(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    return qemus_of(pid)


@pytest.mark.slow
def test_interrupted_capture_resumes_keeping_finished_batches(tmp_path):
    require_qemu()
    spec, out = tmp_path / "pair.yaml", tmp_path / "out"
    spec.write_text(yaml.safe_dump(SPEC))
    log1 = tmp_path / "run1.log"
    proc = start(spec, out, log1)
    try:
        # The first batch finishes; Ctrl-C once the second one's guest is running.
        wait_for(lambda: (out / "first-1" / COMPLETE).exists(), 240, proc, log1)
        wait_for(lambda: qemus_of(proc.pid, "second-1"), 60, proc, log1)
        time.sleep(1)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert gone(proc.pid) == []
    assert rc != 0
    last = log1.read_text().strip().splitlines()[-1]
    assert last.endswith("interrupted by SIGINT; all guests stopped"), last
    text = log1.read_text()
    assert "capture pair: guest first-1 snapshot 2/2 (t=24 s), 2 of 4 snapshots done, ~" in text
    assert "Traceback" not in text
    assert not (out / "second-1" / COMPLETE).exists()
    first = {p: p.stat().st_mtime_ns for p in (out / "first-1").iterdir()}

    log2 = tmp_path / "run2.log"
    proc = start(spec, out, log2)
    try:
        assert proc.wait(300) == 0, log2.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert gone(proc.pid, 0) == []
    text = log2.read_text()
    assert f"batch 1/2: first-1 recorded before ({COMPLETE}); kept" in text
    assert "first-1: booting" not in text and "second-1: booting" in text
    assert "capture pair: guest second-1 snapshot 1/2 (t=20 s), 3 of 4 snapshots done, ~" in text
    assert {p: p.stat().st_mtime_ns for p in (out / "first-1").iterdir()} == first  # not recorded again
    manifest = load_manifest(out / "manifest.yaml")
    assert [d.id for d in manifest.domains] == ["first-1", "second-1"]
    for d in manifest.domains:
        assert [s.time_s for s in d.snapshots] == [20.0, 24.0]
        assert normalise_frames(d).height == 2 * 128 * 256


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_no_qemu_outlives_the_capture(tmp_path, sig):
    """SIGTERM goes the way of Ctrl-C (every guest stopped, one line, non-zero status); even
    SIGKILL, which nothing can catch, takes the guests along (their parent-death signal)."""
    require_qemu()
    spec, out, log = tmp_path / "pair.yaml", tmp_path / "out", tmp_path / "run.log"
    spec.write_text(yaml.safe_dump({**SPEC, "batch_size": 2}))
    proc = start(spec, out, log)
    try:
        wait_for(lambda: len(qemus_of(proc.pid)) == 2, 60, proc, log)
        time.sleep(1)
        proc.send_signal(sig)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert gone(proc.pid) == []
    if sig == signal.SIGKILL:
        assert rc == -signal.SIGKILL
        for left in scratch_dir().glob(f"xpipe-capture-{proc.pid}-*"):  # nothing could remove it
            shutil.rmtree(left)
    else:
        assert rc == 130
        last = log.read_text().strip().splitlines()[-1]
        assert last.endswith("interrupted by SIGTERM; all guests stopped"), last
