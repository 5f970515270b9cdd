"""The .test experiment through a real one-node SLURM cluster (scripts/start-slurm.sh:
munge, MariaDB, slurmdbd, slurmctld, slurmd) with snakemake-executor-plugin-slurm and
profiles/slurm: sacct must show every job of the run as a completed SLURM job with
the account, partition, memory and time limit the profile asks for."""

import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter

import pytest
import yaml
from test_pipeline import ROOT, TEST, copy_project, planned_jobs, snakemake

PROFILE = ("--workflow-profile", "profiles/slurm")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("apt-get") is None,
                       reason="the cluster is installed from Debian's packages (Linux with apt-get)"),
    pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() != 0,
                       reason="scripts/start-slurm.sh installs packages and starts daemons: run as root"),
]


def mebibytes(text):
    """sacct's ReqMem ('4G', '4096M', '512K') in MiB."""
    m = re.fullmatch(r"([\d.]+)([KMGT])", text)
    assert m, f"unexpected ReqMem {text!r}"
    return float(m[1]) * {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}[m[2]]


def minutes(text):
    """sacct's Timelimit ('01:00:00', '1-00:00:00', '30:00') in minutes."""
    days, _, hms = text.rpartition("-")
    parts = [int(p) for p in hms.split(":")]
    h, m, s = [0] * (3 - len(parts)) + parts
    return (int(days or 0) * 24 + h) * 60 + m + s / 60


def rule_of(comment):
    """The rule from the plugin's job comment: rule_NAME or rule_NAME_wildcards_VALUES."""
    m = re.fullmatch(r"rule_(.+?)(?:_wildcards_.*)?", comment)
    assert m, f"unexpected job comment {comment!r}"
    return m[1]


def start_cluster(timeout):
    return subprocess.run(["bash", str(ROOT / "scripts/start-slurm.sh")], check=False, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=timeout)


@pytest.fixture(scope="module")
def cluster():
    r = start_cluster(900)  # installs the packages on a fresh machine
    assert r.returncode == 0, f"scripts/start-slurm.sh failed:\n{r.stdout}\n{r.stderr}"
    # running it again with the cluster up changes nothing and is quick
    t = time.monotonic()
    again = start_cluster(120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "starting" not in again.stdout and "wrote" not in again.stdout, again.stdout
    assert time.monotonic() - t < 30


def test_every_job_of_the_test_experiment_is_a_slurm_job_with_the_profiles_resources(cluster, tmp_path):
    root = copy_project(tmp_path / "project")
    resources = yaml.safe_load((root / "profiles/slurm/config.yaml").read_text())["default-resources"]
    expected = planned_jobs(root, *TEST, *PROFILE)
    expected.pop("all")  # a target without a command: Snakemake runs it itself, not on the cluster
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 60))

    r = snakemake(root, *TEST, *PROFILE)
    log = r.stdout + r.stderr
    run_id = re.search(r"SLURM run ID: (\S+)", log)[1]  # every job's name
    submitted = {int(i) for i in re.findall(r"submitted with SLURM jobid (\d+)", log)}
    assert (root / ".test/results/default/xpipe.duckdb").stat().st_size > 0
    assert (root / ".test/results/default/tables/summary.md").exists()

    fields = ["JobID", "Comment", "State", "ExitCode", "Account", "Partition", "ReqMem", "Timelimit",
              "AllocCPUS", "NodeList"]
    out = subprocess.run(["sacct", "-n", "-P", "-X", "--name", run_id, "--starttime", since,
                          "-o", ",".join(fields)], capture_output=True, text=True, check=True).stdout
    jobs = [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line]
    assert {int(j["JobID"]) for j in jobs} == submitted
    assert Counter(rule_of(j["Comment"]) for j in jobs) == Counter(expected)
    for j in jobs:
        what = f"SLURM job {j['JobID']} ({j['Comment']})"
        assert (j["State"], j["ExitCode"]) == ("COMPLETED", "0:0"), what
        assert j["Account"] == resources["slurm_account"], what
        assert j["Partition"] == resources["slurm_partition"], what
        assert mebibytes(j["ReqMem"]) == resources["mem_mb"], what
        assert minutes(j["Timelimit"]) == resources["runtime"], what
        assert int(j["AllocCPUS"]) >= 1 and j["NodeList"] not in ("", "None assigned"), what
