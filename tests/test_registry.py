"""The policy registry is the one definition of each policy: the run-id grammar,
the sweep's config keys, the run tables' columns, the figures' labels, colours
and order all come from it."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from xpipe.experiment import load_schema
from xpipe.report.db import build_database, query
from xpipe.report.figures import FIGURES, runs_in_order
from xpipe.sim.area import EVICTIONS
from xpipe.sim.metrics import per_time
from xpipe.sim.policies import REGISTRY
from xpipe.sim.replay import DomainTrace
from xpipe.sim.runs import RunSpec, all_params, expand_sweep, sweep_schema
from xpipe.sim.sweep import replay_sweep
from xpipe.sim.tables import PREFIXES, RUN_KEY, SUMMARY, TABLES, TIMELINE, TYPES

ROOT = Path(__file__).resolve().parents[1]


def default_sweep():
    schema = sweep_schema()
    return {k: v["default"] for k, v in schema["properties"].items()}


def test_config_schema_takes_policies_and_parameters_from_the_registry():
    sweep = load_schema(ROOT / "workflow/schemas/config.schema.yaml")["properties"]["sweep"]["properties"]
    assert sweep["policies"]["items"]["enum"] == list(REGISTRY)
    assert sweep["eviction"]["items"]["enum"] == list(EVICTIONS)
    for p in all_params():
        assert p.name in sweep and sweep[p.name]["default"] == list(p.default)
        assert (p.unit in sweep[p.name]["description"]) if p.unit else True


def test_every_parameter_is_a_column_of_every_run_table():
    names = [c.name for c in RUN_KEY]
    assert len(names) == len(set(names))
    for p in all_params():
        for table in TABLES:
            assert p.name in [c.name for c in table.columns], (p.name, table.name)
    assert all("area_mib" in [c.name for c in t.columns] for t in TABLES)


def test_runs_sort_numbers_as_numbers_and_policies_in_registry_order():
    sweep = default_sweep() | {"area_mib": [256, 4, 16, 1, 64], "scan_pages_per_s": [10000, 200, 1000]}
    runs = expand_sweep(sweep)
    assert [r.policy for r in runs] == sorted((r.policy for r in runs), key=list(REGISTRY).index)
    dsa_lru = [r.params["area_mib"] for r in runs if r.policy == "dsa" and r.params["eviction"] == "lru"
               and not r.params["admit_zero"]]
    assert dsa_lru == [1, 4, 16, 64, 256]
    assert [r.params["scan_pages_per_s"] for r in runs if r.policy == "scan"] == [200, 1000, 10000]
    for r in runs:
        assert RunSpec.parse(r.run_id) == r


def test_sweep_names_the_policies_it_runs_and_always_the_references():
    runs = expand_sweep(default_sweep() | {"policies": ["zero"], "snapshot_every": [1, 3]})
    assert [r.run_id for r in runs] == ["none", "none-e3", "zero", "zero-e3", "oracle", "oracle-e3"]
    with pytest.raises(ValueError, match="unknown"):
        expand_sweep(default_sweep() | {"policies": ["dsa", "ksm"]})


def test_labels_read_in_mib_and_colours_are_the_policy_s():
    run = RunSpec.make("dsa", eviction="fifo", area_mib=0.25, admit_zero=True)
    assert run.run_id == "dsa-fifo-0.25mib-z" and run.label == "dsa FIFO 0.25 MiB + zero page"
    rows = pl.DataFrame([{"label": r.label, "run_order": i, "policy": r.policy}
                         for i, r in enumerate(expand_sweep(default_sweep()))]).to_pandas()
    order, colours = runs_in_order(rows)
    assert order[0] == "none" and order[-1] == "oracle (ideal)"
    assert colours["oracle (ideal)"] == REGISTRY["oracle"].colour
    assert len({colours[lab] for lab in order}) == len(order)  # shades tell the runs of one policy apart


def test_every_figure_has_its_query_function_and_caption():
    queries = {p.stem for p in (ROOT / "workflow/sql/figures").glob("*.sql")}
    captions = {p.stem for p in (ROOT / "workflow/report/figures").glob("*.rst")}
    assert queries == set(FIGURES) == captions


def test_a_new_policy_is_one_registration():
    """A policy registered from outside the package appears in the grammar, the
    sweep, the config schema and the run tables' columns."""
    code = '''
from xpipe.sim.policy import Param, PolicyInfo, register
from xpipe.sim.policies.none import NoSharing
register(PolicyInfo(name="toy", doc="a test policy", factory=lambda p, ctx: NoSharing(),
    label=lambda p: f"toy {p['toy_level']}", colour="#000000", order=5,
    params=(Param("toy_level", int, "levels", "how toy", default=(1, 2), token="l{}", minimum=0),)))
from xpipe.sim.runs import RunSpec, expand_sweep, sweep_schema
from xpipe.sim.tables import SUMMARY
schema = sweep_schema()["properties"]
sweep = {k: v["default"] for k, v in schema.items()} | {"policies": ["toy"]}
print([r.run_id for r in expand_sweep(sweep)], RunSpec.parse("toy-l7").label,
      "toy_level" in [c.name for c in SUMMARY.columns], "toy" in schema["policies"]["items"]["enum"])
'''
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "['none', 'toy-l1', 'toy-l2', 'oracle'] toy 7 True True"


def _two_domains():
    rng = np.random.default_rng(5)
    pool = rng.integers(1, 2**63, 40, dtype=np.uint64)
    doms = []
    for i in range(2):
        snaps = [pool[rng.integers(0, 40, 64)] for _ in range(3)]
        doms.append(DomainTrace(id=f"d{i}", times=np.array([5.0, 10.0, 15.0]),
                                load=lambda k, s=snaps: (s[k], np.full(64, 4, np.uint8)), frames=64,
                                read_times=np.sort(rng.uniform(0, 16, 50)),
                                read_hashes=pool[rng.integers(0, 40, 50)]))
    return doms


def test_database_footprint_view_is_the_metrics_formula(tmp_path):
    runs = expand_sweep(default_sweep() | {"area_mib": [0.0625], "eviction": ["lru"], "snapshot_every": [1]})
    out = {t.name: str(tmp_path / f"{t.name}.parquet") for t in (SUMMARY, TIMELINE, TYPES, PREFIXES)}
    replay_sweep(_two_domains(), runs, "m", "c", out, True, [1], True)
    db = tmp_path / "results/x/xpipe.duckdb"
    build_database(db, {k: [v] for k, v in out.items()}, {})
    view = query(db, "SELECT run, time_s, footprint, footprint_reserved, footprint_none FROM per_time")
    timeline = pl.read_parquet(out["timeline"])
    for run in timeline["run"].unique():
        want = per_time(timeline.filter(pl.col("run") == run)).select(
            "time_s", "footprint", "footprint_reserved", "footprint_none")
        got = view.filter(pl.col("run") == run).sort("time_s").drop("run")
        assert got.cast(want.schema).equals(want), run
    summary = pl.read_parquet(out["summary"])
    assert summary["run_order"].to_list() == sorted(summary["run_order"].to_list())
