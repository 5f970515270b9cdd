"""The whole workflow, run in temporary copies of the project: the default
experiment on the real default capture, and the .test experiment on a tiny
SYNTHETIC capture (lint, report, code inputs, experiments kept apart)."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from guests import require_qemu

from xpipe.report.db import connect
from xpipe.report.figures import FIGURES

ROOT = Path(__file__).resolve().parents[1]


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
    for name in ("Snakefile", "workflow", "config", "profiles", "xpipe", "data", ".test"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__", "results", ".snakemake"))
        elif src.exists():
            shutil.copy(src, root / name)
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project after `snakemake --cores 2` (the default experiment, real data)."""
    root = copy_project(tmp_path_factory.mktemp("project"))
    snakemake(root, "--cores", "2")
    return root


TEST = ("--directory", ".test")  # the test experiment's working directory, as the catalog runs it


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A copy of the project after the .test experiment's run."""
    root = copy_project(tmp_path_factory.mktemp("tiny"))
    snakemake(root, *TEST, "--cores", "2")
    return root


@pytest.mark.slow
def test_default_pipeline_writes_figures_tables_and_database(project):
    out = project / "results/default"
    for f in FIGURES:
        assert (out / "figures" / f"{f}.png").stat().st_size > 10_000, f
        assert (out / "figures" / f"{f}.svg").exists()
    md = (out / "tables/summary.md").read_text()
    assert md.count("\n| ") > 3
    con = connect(out / "xpipe.duckdb")
    rows = con.sql("SELECT mix, snapshot_every, policy, min(savings), max(savings), bool_or(synthetic) "
                   "FROM summary GROUP BY ALL").fetchall()
    savings = {(m, k, p): (lo, hi) for m, k, p, lo, hi, _ in rows}
    for (mix, k, policy), (lo, hi) in savings.items():
        assert savings[(mix, k, "oracle")][0] >= hi - 1e-9, (mix, policy)  # oracle saves the most
        assert lo >= 0.0 if policy != "none" else hi == 0.0
    assert {s for *_, s in rows} == {False}  # the default capture is real
    assert "SYNTHETIC" not in md
    # every table carries area_mib; every per-domain table and view carries capture
    for table in ("summary", "timeline", "types", "prefixes"):
        assert "area_mib" in con.sql(f"SELECT * FROM {table} LIMIT 0").columns, table
    for table in ("timeline", "domains", "frames", "requests", "pages", "reads"):
        assert con.sql(f"SELECT DISTINCT capture FROM {table}").fetchall() == [("servers",)], table
    # the shipped server capture, as the database describes it: 10 guests of 1 GiB, 5 services
    # and idle, 2 releases, every 5th of 11 snapshots; KSM recorded at all 11 of each batch of 2
    assert con.sql("SELECT count(*), count(DISTINCT workload), count(DISTINCT os), min(memory_mib), "
                   "max(snapshots) FROM domains").fetchall() == [(10, 6, 2, 1024, 3)]
    [(n, low)] = con.sql("SELECT count(*), min(ksm_pages_sharing / predicted_sharing_all_mergeable) "
                         "FROM ksm_at_capture").fetchall()
    assert n == 5 * 11 and 0.85 < low <= 1.0
    # sizes in MiB where people read them: labels, not pages
    labels = {r[0] for r in con.sql("SELECT label FROM summary WHERE policy = 'dsa'").fetchall()}
    assert "dsa LRU 16 MiB" in labels
    con.close()


@pytest.mark.slow
def test_rerun_does_nothing_and_a_figure_change_reruns_only_the_report(project):
    assert planned_jobs(project) == {}
    fig = project / "xpipe/report/figures.py"
    original = fig.read_text()
    fig.write_text(original + "\n# a change to the figures only\n")
    try:
        assert set(planned_jobs(project)) == {"draw_figures", "all"}
    finally:
        fig.write_text(original)
        os.utime(fig, (0, 0))


@pytest.mark.slow
def test_moved_project_keeps_its_results(project, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(project, moved, symlinks=True)
    assert planned_jobs(moved) == {}


@pytest.mark.slow
def test_interrupted_run_resumes_without_redoing_finished_work(project):
    # As if stopped while replaying: one mix's replay and the whole report stage missing.
    out = project / "results/default"
    mix = next((out / "replay").iterdir())
    aside = project / "aside"
    aside.mkdir()
    for p in (mix, out / "xpipe.duckdb"):
        shutil.move(p, aside / p.name)
    try:
        jobs = planned_jobs(project)
        assert jobs == {"replay_mix": 1, "build_database": 1, "draw_figures": 1,
                        "tabulate_summary": 1, "all": 1}
    finally:
        shutil.move(aside / mix.name, mix)
        shutil.move(aside / "xpipe.duckdb", out / "xpipe.duckdb")


@pytest.mark.slow
def test_bad_manifest_fails_clearly_and_keeps_results(project, tmp_path):
    bad = tmp_path / "manifest.yaml"
    bad.write_text("format: xpipe-capture/1\ndomains:\n  - id: a\n    workload: idle\n    memory_mib: -4\n"
                   "    snapshots: [{time_s: 1, pages: nothing.xxh}]\n")
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"captures: {{bad: {{manifest: {bad}}}}}\nmixes: {{m: {{capture: bad, domains: [a]}}}}\n")
    db = project / "results/default/xpipe.duckdb"
    before = db.stat().st_mtime_ns
    r = snakemake(project, "--cores", "1", "--configfile", str(cfg), check=False)
    assert r.returncode != 0
    assert "manifest.yaml, domains[0].snapshots[0].pages: file 'nothing.xxh' does not exist" in r.stderr + r.stdout
    assert "Traceback" not in r.stderr
    assert db.stat().st_mtime_ns == before


@pytest.mark.slow
def test_misspelled_config_key_says_what_was_meant(project, tmp_path):
    cfg = tmp_path / "typo.yaml"
    cfg.write_text("sweep:\n  are_mib: [1, 2]\n")
    r = snakemake(project, "-n", "--configfile", str(cfg), check=False)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "typo.yaml (or --config), sweep.are_mib: unknown key; did you mean 'area_mib'?" in out
    assert out.count("\n") < 15  # one line, not the schema


@pytest.mark.slow
def test_query_command(project, tmp_path):
    def xpipe(*args, cwd=project):
        return subprocess.run([sys.executable, "-m", "xpipe.cli", *args], cwd=cwd, capture_output=True, text=True)

    r = xpipe("query", "--format", "csv", "SELECT count(DISTINCT policy) AS n FROM summary")
    assert r.returncode == 0 and r.stdout.splitlines() == ["n", "5"]
    # the per-page views resolve against the database's project, not the working directory
    r = xpipe("query", "--format", "csv", "--db", str(project / "results/default/xpipe.duckdb"),
              "SELECT (SELECT count(*) FROM pages) > 0 AND (SELECT count(*) FROM reads) > 0 AS found", cwd=tmp_path)
    assert r.stdout.splitlines() == ["found", "true"]
    r = xpipe("query", "SELECT * FROM nosuchtable")
    assert r.returncode == 2 and "nosuchtable" in r.stderr and "Traceback" not in r.stderr
    # outside the project: how to point at a database
    r = xpipe("query", "SELECT 1", cwd=tmp_path)
    assert r.returncode == 2 and "--db" in r.stderr and "run in the project folder" in r.stderr
    r = xpipe("describe")
    assert "summary_every_snapshot" in r.stdout and "shown_runs" in r.stdout
    assert not re.search(r"^blocks\s", r.stdout, re.M)  # not a table of the database


@pytest.mark.slow
def test_test_experiment_is_lint_clean_and_its_report_embeds_every_figure(tiny):
    r = snakemake(tiny, *TEST, "--lint", check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    snakemake(tiny, *TEST, "--report", "report.html")
    html = (tiny / ".test/report.html").read_text(errors="replace")
    for f in FIGURES:
        assert f"{f}.png" in html, f
        caption = (tiny / "workflow/report/figures" / f"{f}.rst").read_text().split()
        assert " ".join(caption[:6]) in html, f  # each figure's own caption
    con = connect(tiny / ".test/results/default/xpipe.duckdb")
    assert con.sql("SELECT bool_and(synthetic) FROM summary").fetchall() == [(True,)]
    con.close()


# A module each stage's script imports, and the stages an edit must rerun (and what follows).
EDITS = {
    "xpipe/schemas.py": {"normalise_domain", "replay_mix", "build_database"},
    "xpipe/io.py": {"make_synthetic", "normalise_domain", "replay_mix", "draw_figures"},
    "xpipe/errors.py": {"normalise_domain", "replay_mix", "draw_figures"},
    "xpipe/report/__init__.py": {"build_database", "draw_figures", "tabulate_summary"},
    "xpipe/sim/policies/dsa.py": {"replay_mix", "build_database", "draw_figures"},
    "xpipe/readers/registry.py": {"normalise_domain", "replay_mix"},
    "xpipe/extract.py": {"normalise_domain", "replay_mix"},
}


@pytest.mark.slow
@pytest.mark.parametrize("module", sorted(EDITS))
def test_editing_an_imported_module_reruns_its_stage(tiny, module):
    path = tiny / module
    original = path.read_text()
    path.write_text(original + "\n# an edit\n")
    try:
        jobs = planned_jobs(tiny, *TEST)
    finally:
        path.write_text(original)
        os.utime(path, (0, 0))
    assert EDITS[module] <= set(jobs), (module, jobs)


@pytest.mark.slow
def test_experiments_keep_their_own_results(tiny):
    test = tiny / ".test"
    default_summary = test / "results/default/replay/all/summary.parquet"
    before = default_summary.read_bytes()
    sweep = test / "config/sweeps/areas.yaml"
    sweep.parent.mkdir(exist_ok=True)
    sweep.write_text(yaml.safe_dump({"sweep": {"policies": ["dsa"], "area_mib": [0.5, 2], "eviction": ["lfu"]}}))
    other = test / "other.yaml"  # a second capture: the views hold only the experiment's own
    other.write_text(yaml.safe_dump({
        "captures": {"small": {"synthetic": {"seed": 3, "memory_mib": 2, "disk_mib": 4, "workloads": ["web"],
                                             "domains_per_workload": [2], "snapshot_times_s": [5, 10]}}},
        "mixes": {"two": {"capture": "small", "domains": ["web-1", "web-2"]}},
        "domains_per_host": False,
    }))
    snakemake(test, "--snakefile", "../Snakefile", "--cores", "2", "--configfile", "config/sweeps/areas.yaml")
    snakemake(tiny, *TEST, "--cores", "2", "--configfile", str(other))
    assert default_summary.read_bytes() == before
    assert planned_jobs(tiny, *TEST) == {}  # switching back reruns nothing
    con = connect(test / "results/areas/xpipe.duckdb")
    assert con.sql("SELECT DISTINCT area_mib FROM summary WHERE policy = 'dsa' ORDER BY 1").fetchall() \
        == [(0.5,), (2.0,)]
    con.close()
    con = connect(test / "results/other/xpipe.duckdb")  # other.yaml's mixes replace the base file's
    assert con.sql("SELECT DISTINCT capture FROM pages ORDER BY 1").fetchall() == [("small",)]
    assert con.sql("SELECT DISTINCT mix FROM summary ORDER BY 1").fetchall() == [("two",)]
    con.close()
    con = connect(test / "results/default/xpipe.duckdb")
    assert con.sql("SELECT DISTINCT capture FROM pages").fetchall() == [("tiny",)]
    con.close()


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
    assert (root / "results/logs/capture/busybox.log").read_text().count(": snapshot 3/3 at") == 2  # one per guest
    con = connect(root / "results/default/xpipe.duckdb")
    domains = con.sql("SELECT domain, synthetic FROM domains ORDER BY domain").fetchall()
    assert domains == [("dup-1", False), ("dup-2", False)]
    assert con.sql("SELECT count(*) FROM reads").fetchall()[0][0] > 0
    savings = dict(con.sql("SELECT policy, max(savings) FROM summary WHERE mix = 'pair' GROUP BY ALL").fetchall())
    assert savings["none"] == 0.0 and savings["oracle"] >= savings["dsa"] >= 0.0
    con.close()
    assert planned_jobs(root) == {}  # the capture is not redone


def test_a_lenient_capture_skips_and_counts_bad_records(tiny, tmp_path):
    """A trace with bad lines: a capture that says `lenient: true` skips and counts them
    (the domains table, the skipped table); without it the run stops at the first, naming it."""
    import gzip

    import polars as pl

    test = tiny / ".test"
    bundle = test / "bad-fiu"
    shutil.copytree(ROOT / "data/fiu-synthetic", bundle)
    lines = gzip.decompress((bundle / "trace.txt.gz").read_bytes()).decode().splitlines(keepends=True)
    lines[5:5] = ["garbage\n", "1 2 p 8 0 R 8 0 " + "0" * 32 + "\n"]  # malformed; size 0
    lines[9:9] = ["not a request either\n"]
    (bundle / "trace.txt.gz").write_bytes(gzip.compress("".join(lines).encode()))
    mixes = {"bad": {"capture": "badfiu", "domains": ["dev-8-0", "dev-8-16"]}}
    lenient = test / "lenient.yaml"
    lenient.write_text(yaml.safe_dump({
        "captures": {"badfiu": {"manifest": "bad-fiu/manifest.yaml", "lenient": True}}, "mixes": mixes,
        "sweep": {"policies": ["none", "oracle", "dsa"], "area_mib": [1], "eviction": ["lru"]},
        "domains_per_host": False}))
    snakemake(tiny, *TEST, "--cores", "2", "--configfile", str(lenient))
    domains = pl.read_parquet(test / "results/normalised/badfiu/domains.parquet")
    assert domains["records_skipped"].to_list() == [3, 3]  # both domains read the one file
    skipped = pl.read_parquet(test / "results/normalised/badfiu/skipped/dev-8-0.parquet")
    assert dict(zip(skipped["kind"], skipped["records"])) == {"malformed line": 2,
                                                              "size 0 or number out of range": 1}
    con = connect(test / "results/lenient/xpipe.duckdb")
    assert con.sql("SELECT sum(records_skipped) FROM domains WHERE capture = 'badfiu'").fetchall() == [(6,)]
    con.close()

    strict = test / "strict.yaml"
    strict.write_text(lenient.read_text().replace("badfiu", "strictfiu").replace("lenient: true", "lenient: false"))
    r = snakemake(tiny, *TEST, "--cores", "2", "--configfile", str(strict), check=False)
    assert r.returncode != 0
    assert re.search(r"bad-fiu/trace\.txt\.gz, line 6: expected 'ts_ns pid process lba size R\|W major minor md5'",
                     r.stdout + r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
