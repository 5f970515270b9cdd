"""The whole default pipeline, run in a temporary copy of the project."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from guests import require_qemu

from xpipe.report import FIGURE_NAMES
from xpipe.report.db import connect

ROOT = Path(__file__).resolve().parents[1]
FIGURES = FIGURE_NAMES


def snakemake(cwd, *args, check=True):
    r = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=cwd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def planned_jobs(cwd, *args):
    """rule -> job count of a dry run."""
    out = snakemake(cwd, "-n", *args).stdout
    if "Nothing to be done" in out:
        return {}
    stats = out.split("Job stats:")[1].split("total")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}


def copy_project(root):
    root.mkdir(parents=True, exist_ok=True)
    for name in ("Snakefile", "workflow", "config", "profiles", "xpipe", "data"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy(src, root / name)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("project"))
    snakemake(root, "--cores", "2")
    return root


@pytest.mark.slow
def test_default_pipeline_writes_figures_tables_and_database(project):
    for f in FIGURES:
        assert (project / "results/figures" / f"{f}.png").stat().st_size > 10_000
        assert (project / "results/figures" / f"{f}.svg").exists()
    md = (project / "results/tables/summary.md").read_text()
    assert md.count("\n| ") > 3
    con = connect(project / "results/xpipe.duckdb")
    rows = con.sql("SELECT mix, snapshot_every, policy, min(savings), max(savings), bool_or(synthetic) "
                   "FROM summary GROUP BY ALL").fetchall()
    savings = {(m, k, p): (lo, hi) for m, k, p, lo, hi, _ in rows}
    for (mix, k, policy), (lo, hi) in savings.items():
        assert savings[(mix, k, "oracle")][0] >= hi - 1e-9, (mix, policy)  # oracle saves the most
        assert lo >= 0.0 if policy != "none" else hi == 0.0
    synthetic = {s for *_, s in rows}
    labelled = con.sql("SELECT bool_or(synthetic) FROM domains").fetchall()[0][0]
    assert synthetic == {labelled}
    if labelled:
        assert "SYNTHETIC" in md
    assert con.sql("SELECT count(*) FROM pages").fetchall()[0][0] > 0
    con.close()


@pytest.mark.slow
def test_rerun_does_nothing_and_a_figure_change_reruns_only_the_report(project):
    assert planned_jobs(project) == {}
    fig = project / "xpipe/report/figures.py"
    original = fig.read_text()
    fig.write_text(original + "\n# a change to the figures only\n")
    try:
        assert set(planned_jobs(project)) == {"draw_figure", "all"}
    finally:
        fig.write_text(original)
        os.utime(fig, (0, 0))


@pytest.mark.slow
def test_interrupted_run_resumes_without_redoing_finished_work(project):
    # As if stopped while replaying: one mix's replay and the whole report stage missing.
    mix = next((project / "results/replay").iterdir())
    aside = project / "aside"
    aside.mkdir()
    for p in (mix, project / "results/xpipe.duckdb"):
        shutil.move(p, aside / p.name)
    try:
        jobs = planned_jobs(project)
        assert jobs == {"replay_mix": 1, "build_database": 1, "draw_figure": len(FIGURES),
                        "tabulate_summary": 1, "all": 1}
    finally:
        shutil.move(aside / mix.name, mix)
        shutil.move(aside / "xpipe.duckdb", project / "results/xpipe.duckdb")


@pytest.mark.slow
def test_bad_manifest_fails_clearly_and_keeps_results(project, tmp_path):
    bad = tmp_path / "manifest.yaml"
    bad.write_text("format: xpipe-capture/1\ndomains:\n  - id: a\n    workload: idle\n    memory_mib: -4\n"
                   "    snapshots: [{time_s: 1, pages: nothing.xxh}]\n")
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"captures: {{bad: {{manifest: {bad}}}}}\nmixes: {{m: {{capture: bad, domains: [a]}}}}\n")
    db = project / "results/xpipe.duckdb"
    before = db.stat().st_mtime_ns
    r = snakemake(project, "--cores", "1", "--configfile", str(cfg), check=False)
    assert r.returncode != 0
    assert "manifest.yaml, domains[0].snapshots[0].pages: file 'nothing.xxh' does not exist" in r.stderr + r.stdout
    assert "Traceback" not in r.stderr
    assert db.stat().st_mtime_ns == before


@pytest.mark.slow
def test_query_command(project, tmp_path):
    r = subprocess.run([sys.executable, "-m", "xpipe.cli", "query", "--format", "csv",
                        "SELECT count(DISTINCT policy) AS n FROM summary"],
                       cwd=project, capture_output=True, text=True, check=True)
    assert r.stdout.splitlines() == ["n", "5"]
    # the per-page views resolve against the database's project, not the working directory
    r = subprocess.run([sys.executable, "-m", "xpipe.cli", "query", "--format", "csv",
                        "--db", str(project / "results/xpipe.duckdb"),
                        "SELECT (SELECT count(*) FROM pages) > 0 AND (SELECT count(*) FROM reads) > 0 AS found"],
                       cwd=tmp_path, capture_output=True, text=True, check=True)
    assert r.stdout.splitlines() == ["found", "true"]
    r = subprocess.run([sys.executable, "-m", "xpipe.cli", "query", "SELECT * FROM nosuchtable"],
                       cwd=project, capture_output=True, text=True)
    assert r.returncode == 2 and "nosuchtable" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_report_embeds_every_figure(project):
    snakemake(project, "--report", "report.html")
    html = (project / "report.html").read_text(errors="replace")
    for f in FIGURES:
        assert f"{f}.png" in html


@pytest.mark.slow
def test_recorded_capture_is_made_first_then_replayed(tmp_path):
    """A capture with `record:` runs rule capture (real QEMU guests), then the whole pipeline on it."""
    require_qemu()
    root = copy_project(tmp_path / "project")
    (root / "config/config.yaml").write_text(yaml.safe_dump({
        "captures": {"bb": {"record": "busybox"}},
        "mixes": {"pair": {"capture": "bb", "domains": ["dup-1", "dup-2"]}},
        "sweep": {"policies": ["none", "oracle", "dsa"], "area_mib": [16], "eviction": ["lru"],
                  "admit_zero": [False], "snapshot_every": [1], "host_mib": [1024]},
    }))
    assert snakemake(root, "-n").returncode == 0 and planned_jobs(root)["capture"] == 1
    snakemake(root, "--cores", "2")
    assert (root / "results/captures/busybox/manifest.yaml").exists()
    assert (root / "results/logs/capture/busybox.log").read_text().count("snapshot 3/3") == 2
    con = connect(root / "results/xpipe.duckdb")
    domains = con.sql("SELECT domain, synthetic FROM domains ORDER BY domain").fetchall()
    assert domains == [("dup-1", False), ("dup-2", False)]
    assert con.sql("SELECT count(*) FROM reads").fetchall()[0][0] > 0
    savings = dict(con.sql("SELECT policy, max(savings) FROM summary WHERE mix = 'pair' GROUP BY ALL").fetchall())
    assert savings["none"] == 0.0 and savings["oracle"] >= savings["dsa"] >= 0.0
    con.close()
    assert planned_jobs(root) == {}  # the capture is not redone
