"""A mix's replay split into K partitions by content hash gives exactly the unpartitioned tables.

Seeded random mixes with everything that is not per content: domains that start at
different times and have different numbers of frames and snapshots, frames written
between snapshots (some back to an earlier content, so frames leave a partition and
come back), zero pages in some snapshots only, reads after the last snapshot, and an
I/O-only domain. Every run of the registry's default sweep, widened so that areas
evict, scanners do not visit every frame each interval, the zero page is admitted and
sparser snapshots are replayed.
"""

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal
from test_pipeline import TEST, copy_project, snakemake

from xpipe.configcheck import validate_config
from xpipe.errors import InputError
from xpipe.experiment import load_schema
from xpipe.hashing import ZERO_HASH
from xpipe.io import write_parquet
from xpipe.pagetypes import PAGE_TYPES
from xpipe.sim import replay as replay_module
from xpipe.sim import runs as runs_module
from xpipe.sim.load import load_domain, load_domain_share, split_pages
from xpipe.sim.partition import PARTS, WHOLE, Partition
from xpipe.sim.replay import DomainTrace, replay
from xpipe.sim.runs import RunSpec, expand_sweep, sweep_schema
from xpipe.sim.sweep import merge_sweep, partition_sweep, replay_sweep
from xpipe.sim.tables import TABLES

ROOT = Path(__file__).resolve().parents[1]
TYPES = np.array([PAGE_TYPES.index(t) for t in ("file_data", "file_code", "anonymous", "zero", "slab")], np.uint8)
HOST_MIB = [1, 2]


def sweep() -> list[RunSpec]:
    """The registry's default sweep, widened: small areas that evict, slow scanners, both
    scan starts, the zero page admitted, every second snapshot."""
    default = {k: v["default"] for k, v in sweep_schema()["properties"].items()}
    return expand_sweep(default | {
        "area_mib": [*default["area_mib"], 0.0390625, 0.15625],
        "admit_zero": [False, True],
        "scan_pages_per_s": [*default["scan_pages_per_s"], 7, 40],
        "scan_start": ["boot", "snapshot"],
        "snapshot_every": [1, 2],
        "host_mib": HOST_MIB,
    })


RUNS = sweep()


def random_mix(seed: int) -> list[DomainTrace]:
    rng = np.random.default_rng(seed)
    pool = rng.integers(1, 2**63, 90, dtype=np.uint64)  # few contents: plenty of sharing
    pool[:4] = ZERO_HASH
    doms = []
    for d in range(3):
        frames = int(rng.integers(40, 120))
        n_snaps = int(rng.integers(2, 5))
        times = np.sort(rng.choice(np.arange(4, 40), n_snaps, replace=False)) + 7.5 * d  # staggered starts
        hs = [pool[rng.integers(0, len(pool), frames)]]
        for _ in range(n_snaps - 1):
            h = hs[-1].copy()
            written = rng.random(frames) < 0.3
            h[written] = pool[rng.integers(0, len(pool), written.sum())]
            if len(hs) > 1:  # some frames go back to their content of two snapshots before
                back = rng.random(frames) < 0.15
                h[back] = hs[-2][back]
            hs.append(h)
        if d == 1:  # zero pages in this domain's first snapshot only
            hs[0][:5] = ZERO_HASH
            for h in hs[1:]:
                h[h == ZERO_HASH] = pool[10]
        ts = [TYPES[rng.integers(0, len(TYPES), frames)] for _ in hs]
        doms.append(DomainTrace(
            id=f"d{d}", times=times.astype(float), frames=frames, load=lambda k, hs=hs, ts=ts: (hs[k], ts[k]),
            read_times=np.sort(rng.uniform(0, times[-1] + 10, 150)),  # some after the last snapshot
            read_hashes=pool[rng.integers(0, len(pool), 150)],
        ))
    doms.insert(2, DomainTrace(id="io", times=np.zeros(0), frames=0, load=lambda k: None,
                               read_times=np.sort(rng.uniform(0, 50, 80)),
                               read_hashes=pool[rng.integers(0, len(pool), 80)]))
    return doms


def merged_tables(doms, runs, partitions: int, tmp_path, with_prefixes=True) -> dict[str, pl.DataFrame]:
    """Every partition's share, through Parquet as the workflow passes them, merged."""
    shares = []
    for i in range(partitions):
        share = partition_sweep(doms, runs, Partition(i, partitions), with_prefixes)
        for t in PARTS:
            write_parquet(share[t.name], tmp_path / f"{i}-{t.name}.parquet")
        shares.append({t.name: t.conform(pl.read_parquet(tmp_path / f"{i}-{t.name}.parquet")) for t in PARTS})
    return merge_sweep(shares, runs, "m", "c", len(doms), with_prefixes, HOST_MIB, True)


def whole_tables(doms, runs, tmp_path, with_prefixes=True) -> dict[str, pl.DataFrame]:
    """The tables of the one-job replay (the workflow's replay_mix), read back."""
    tmp_path.mkdir(exist_ok=True)
    out = {t.name: str(tmp_path / f"whole-{t.name}.parquet") for t in TABLES}
    replay_sweep(doms, runs, "m", "c", out, with_prefixes, HOST_MIB, True)
    return {name: pl.read_parquet(path) for name, path in out.items()}


@pytest.fixture(scope="module", params=[0, 1, 2])
def mix(request, tmp_path_factory):
    doms = random_mix(request.param)
    return doms, whole_tables(doms, RUNS, tmp_path_factory.mktemp("whole"))


@pytest.mark.parametrize("partitions", [1, 2, 3, 4])
def test_partitioned_sweep_gives_exactly_the_whole_tables(mix, partitions, tmp_path):
    doms, whole = mix
    got = merged_tables(doms, RUNS, partitions, tmp_path)
    assert set(got) == set(whole)
    for name in whole:
        assert len(whole[name]) > 0, name
        assert_frame_equal(got[name], whole[name], check_exact=True)


def test_the_sweep_holds_what_partitions_must_get_right():
    ids = {r.run_id for r in RUNS}
    assert {"dsa-lru-0.0390625mib-z", "scan-r7-boot", "scan-r40-snapshot", "dsa-lfu-1mib-e2"} <= ids
    assert {r.policy for r in RUNS} == set(runs_module.REGISTRY)


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("run_id", ["oracle", "scan-r40-boot", "dsa-fifo-0.0390625mib-z", "zero-e2"])
def test_replay_does_not_depend_on_the_partitions(seed, run_id):
    doms, spec = random_mix(seed), RunSpec.parse(run_id)
    whole = replay(doms, spec)
    for k in (2, 5):
        split = replay(doms, spec, partitions=k)
        assert_frame_equal(split.timeline, whole.timeline, check_exact=True)
        assert_frame_equal(split.types, whole.types, check_exact=True)


def test_without_prefixes_and_io_only_mixes(tmp_path):
    doms = [d for d in random_mix(5) if d.frames == 0] + [DomainTrace(
        id="io2", times=np.zeros(0), frames=0, load=lambda k: None, read_times=np.array([1.0, 2.0]),
        read_hashes=np.array([ZERO_HASH, 7], dtype=np.uint64))]
    runs = [RunSpec.parse(r) for r in ("none", "oracle", "dsa-lru-0.0078125mib-z", "scan-r7-boot")]
    for prefixes in (True, False):
        whole = whole_tables(doms, runs, tmp_path, prefixes)
        got = merged_tables(doms, runs, 3, tmp_path, prefixes)
        for name in whole:
            assert_frame_equal(got[name], whole[name], check_exact=True)


def test_a_partition_holds_only_its_share_of_the_frames(monkeypatch):
    """With contents that never change, each frame is in exactly one partition: the frames
    the policies see add up to the mix's."""
    contents = np.random.default_rng(6).integers(1, 2**63, (3, 400), dtype=np.uint64)
    doms = [DomainTrace(id=f"d{d}", times=np.array([10.0, 20.0]), frames=400,
                        load=lambda k, h=h: (h, np.full(400, 4, np.uint8))) for d, h in enumerate(contents)]
    seen = []
    make = RunSpec.make_policy

    def recording(self, ctx):
        policy = make(self, ctx)
        step = policy.step
        policy.step = lambda f: seen.append(len(f.hashes)) or step(f)
        return policy

    monkeypatch.setattr(RunSpec, "make_policy", recording)
    replay(doms, RunSpec.parse("oracle"), partitions=1)
    assert seen == [1200, 1200]  # two steps
    seen.clear()
    replay(doms, RunSpec.parse("oracle"), partitions=4)
    held = seen[::2]  # each partition's replay, at its first step
    assert len(held) == 4 and sum(held) == 1200 and max(held) < 1200 / 2


def test_parquet_domain_reads_only_its_partition(tmp_path):
    rng = np.random.default_rng(8)
    gfns = rng.permutation(np.arange(0, 300, 3))  # frame numbers with gaps, out of order
    hashes = rng.integers(1, 2**63, (2, len(gfns)), dtype=np.uint64)
    hashes[1, :7] = ZERO_HASH
    pages = pl.DataFrame({
        "domain": "a", "snapshot": np.repeat([0, 1], len(gfns)).astype(np.int32),
        "time_s": np.repeat([5.0, 9.0], len(gfns)), "gfn": np.tile(gfns, 2).astype(np.int64),
        "hash": hashes.ravel(), "page_type": pl.Series(["anonymous"] * (2 * len(gfns)), dtype=pl.Enum(PAGE_TYPES)),
    })
    pages.write_parquet(tmp_path / "pages.parquet")
    pl.DataFrame({"domain": ["a"], "time_s": [1.0], "hash": pl.Series([5], dtype=pl.UInt64)}).write_parquet(
        tmp_path / "reads.parquet")
    d = load_domain(tmp_path / "pages.parquet", tmp_path / "reads.parquet")
    assert d.frames == len(gfns) and d.zero_snapshots == frozenset({1})
    for k in (0, 1):
        _, h_all, _ = d.snapshot(k, WHOLE)
        assert (h_all == hashes[k][np.argsort(gfns)]).all()  # in frame-number order
        rebuilt = np.zeros(len(gfns), dtype=np.uint64)
        for p in range(3):
            index, h, _ = d.snapshot(k, Partition(p, 3))
            assert (h % 3 == p).all() and (np.diff(index.astype(np.int64)) > 0).all()
            rebuilt[index] = h
        assert (rebuilt == h_all).all()
    # split once by partition (rule split_pages), each share gives the same frames
    shares = [tmp_path / f"share-{p}.parquet" for p in range(3)]
    split_pages(tmp_path / "pages.parquet", tmp_path / "snapshots.parquet", shares)
    for p in range(3):
        s = load_domain_share(tmp_path / "snapshots.parquet", shares[p], tmp_path / "reads.parquet", Partition(p, 3))
        assert (s.id, s.frames, s.zero_snapshots, list(s.times)) == ("a", d.frames, d.zero_snapshots, [5.0, 9.0])
        for k in (0, 1):
            for got, want in zip(s.snapshot(k, Partition(p, 3)), d.snapshot(k, Partition(p, 3))):
                assert np.array_equal(got, want)
        with pytest.raises(ValueError, match=f"holds partition {p} of 3, not"):
            s.snapshot(0, Partition((p + 1) % 3, 3))


@pytest.mark.parametrize("bad, message", [
    (0, "0 is less than the minimum of 1"), (-3, "-3 is less than the minimum of 1"),
    (2.5, "2.5 is not of type 'integer'"), ("4", "'4' is not of type 'integer'"),
    (True, "True is not of type 'integer'"), (float("nan"), "nan is not a finite number"),
    (float("inf"), "inf is not a finite number"),
])
def test_replay_partitions_is_checked_in_one_line(bad, message):
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["replay_partitions"] = bad
    with pytest.raises(InputError) as info:
        validate_config(config, load_schema(ROOT / "workflow/schemas/config.schema.yaml"), "config.yaml")
    assert str(info.value) == f"config.yaml, replay_partitions: {message}"


def test_replay_partitions_defaults_to_one():
    config = yaml.safe_load((ROOT / ".test/config/config.yaml").read_text())
    config.pop("replay_partitions", None)
    validate_config(config, load_schema(ROOT / "workflow/schemas/config.schema.yaml"))
    assert config["replay_partitions"] == 1


@pytest.mark.parametrize("index, count", [(0, 0), (3, 3), (-1, 2), (1.0, 2), (True, 2)])
def test_a_partition_is_one_of_count(index, count):
    with pytest.raises((ValueError, TypeError), match="partition"):
        Partition(index, count)


@pytest.mark.slow
def test_test_workflow_gives_the_same_tables_in_four_partitions(tmp_path):
    root = copy_project(tmp_path / "project")
    mixes = yaml.safe_load((root / ".test/config/config.yaml").read_text())["mixes"]

    def tables(experiment):
        return [f"results/{experiment}/replay/{m}/{t.name}.parquet" for m in mixes for t in TABLES]

    one, four = tables("one"), tables("four")
    snakemake(root, *TEST, *one, "--cores", "2", "--config", "experiment=one", "replay_partitions=1")
    split = ("--config", "experiment=four", "replay_partitions=4")
    r = snakemake(root, *TEST, "--lint", *split, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    snakemake(root, *TEST, *four, "--cores", "2", *split)
    assert len(list(root.glob(".test/results/four/logs/replay_partition/*/*.log"))) == 4 * len(mixes)
    assert not list(root.glob(".test/results/four/replay/*/partitions/*/*.parquet"))  # temporary files
    for a, b in zip(one, four):
        assert_frame_equal(pl.read_parquet(root / ".test" / b), pl.read_parquet(root / ".test" / a), check_exact=True)


def test_steps_kept_across_runs_give_the_tables_of_steps_rebuilt_per_run(monkeypatch, tmp_path):
    """A sweep prepares each mix's frames once for every run that keeps the same snapshots;
    above replay.KEEP_BYTES it rebuilds them per run instead. Both give the same tables."""
    loads = []

    def counted(seed):
        doms = random_mix(seed)
        for d in doms:
            d.load = lambda k, load=d.load: loads.append(k) or load(k)
        return doms

    kept = whole_tables(counted(1), RUNS, tmp_path / "kept")
    kept_loads, loads[:] = len(loads), []
    monkeypatch.setattr(replay_module, "KEEP_BYTES", 0)
    rebuilt = whole_tables(counted(1), RUNS, tmp_path / "rebuilt")
    assert len(loads) > 10 * kept_loads  # every run loads every snapshot again
    for name in kept:
        assert_frame_equal(kept[name], rebuilt[name], check_exact=True)
