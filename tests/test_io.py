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
