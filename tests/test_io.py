"""Writing results (xpipe.io): whole files or none, also when a job is stopped."""

import signal
import subprocess
import sys

import pytest

from xpipe.io import atomic_path

JOB = """
import sys, time
from xpipe.io import atomic_path, run_logged

def main():
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_text("half")
        print("writing", flush=True)
        time.sleep(60)

run_logged(None, main)
"""


def test_a_failed_write_leaves_neither_result_nor_temporary_file(tmp_path):
    (tmp_path / "out").write_text("old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out") as tmp:
        tmp.write_text("half")
        raise RuntimeError("job failed")
    assert (tmp_path / "out").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_job_stopped_with_sigterm_leaves_no_temporary_file(tmp_path):
    with subprocess.Popen([sys.executable, "-c", JOB, str(tmp_path / "out")], stdout=subprocess.PIPE,
                          text=True) as job:
        assert job.stdout.readline() == "writing\n"
        assert len(list(tmp_path.iterdir())) == 1  # the temporary file
        job.send_signal(signal.SIGTERM)
        assert job.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def _dead_pid() -> int:
    """The PID of a process that has ended (and, in the moments this test runs, not been reused)."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    return int(done.stdout)


def test_temporary_files_of_killed_jobs_are_removed_by_the_next_write(tmp_path):
    """A SIGKILL leaves the temporary file (nothing runs on SIGKILL); the next write of the
    same result removes it, and keeps those of processes still running."""
    with subprocess.Popen([sys.executable, "-c", JOB, str(tmp_path / "out")], stdout=subprocess.PIPE,
                          text=True) as job:
        assert job.stdout.readline() == "writing\n"
        job.kill()
        job.wait(timeout=30)
    left = [p.name for p in tmp_path.iterdir()]
    assert left == [f".out.tmp{job.pid}"]
    dead = _dead_pid()
    (tmp_path / f".out.tmp{dead}.wal").write_text("a DuckDB log of a killed job")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as alive:
        try:
            (tmp_path / f".out.tmp{alive.pid}").write_text("still being written")
            (tmp_path / ".out.tmpX").write_text("no PID: not ours")
            (tmp_path / ".other.tmp1").write_text("another result's")
            with atomic_path(tmp_path / "out") as tmp:
                tmp.write_text("new")
            assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
                ["out", f".out.tmp{alive.pid}", ".out.tmpX", ".other.tmp1"])
            assert (tmp_path / "out").read_text() == "new"
        finally:
            alive.kill()


def test_an_unwritable_result_fails_before_the_work_naming_the_result(tmp_path):
    long = tmp_path / ("r" * 250)  # a legal name; its temporary name is too long
    worked = []
    with pytest.raises(OSError) as e, atomic_path(long):
        worked.append(True)
    assert e.value.filename == str(long) and not worked
    assert list(tmp_path.iterdir()) == []
