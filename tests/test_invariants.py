"""Invariants across policies on seeded random mixes (not hand-worked, but always true)."""

import numpy as np
import pytest

from xpipe.hashing import ZERO_HASH
from xpipe.schemas import PAGE_TYPES
from xpipe.sim.metrics import per_time
from xpipe.sim.replay import DomainTrace, replay
from xpipe.sim.runs import RunSpec

FILE = PAGE_TYPES.index("file_data")
ANON = PAGE_TYPES.index("anonymous")


def random_mix(seed, n_dom=3, frames=200, snaps=3, reads=300):
    rng = np.random.default_rng(seed)
    pool = rng.integers(1, 2**63, 150, dtype=np.uint64)  # few contents: plenty of sharing
    pool[:10] = ZERO_HASH
    doms = []
    for d in range(n_dom):
        hs = [pool[rng.integers(0, len(pool), frames)] for _ in range(snaps)]
        ts = [np.where(rng.random(frames) < 0.5, FILE, ANON).astype(np.uint8) for _ in range(snaps)]
        doms.append(DomainTrace(
            id=f"d{d}", times=np.arange(1, snaps + 1) * 10.0 + d,  # staggered: domains join late
            load=lambda k, hs=hs, ts=ts: (hs[k], ts[k]), frames=frames,
            read_times=np.sort(rng.uniform(0, snaps * 10 + 5, reads)),
            read_hashes=pool[rng.integers(0, len(pool), reads)],
        ))
    return doms


def footprints(doms, run_id):
    t = per_time(replay(doms, RunSpec.parse(run_id)).timeline)
    return t["footprint"].to_numpy(), t["footprint_none"].to_numpy()


RUNS = ["zero", "scan-r50-boot", "scan-r100000-snapshot", "dsa-lru-0.0390625mib", "dsa-lfu-0.15625mib-z",
        "dsa-fifo-400mib", "dsa-lru-400mib-z"]


@pytest.mark.parametrize("seed", range(5))
def test_oracle_le_policy_le_none(seed):
    doms = random_mix(seed)
    oracle, none = footprints(doms, "oracle")
    assert (footprints(doms, "none")[0] == none).all()
    for run in RUNS:
        fp, fp_none = footprints(doms, run)
        assert (fp_none == none).all()
        assert (oracle <= fp).all() and (fp <= none).all(), run


@pytest.mark.parametrize("seed", range(3))
def test_empty_area_is_no_sharing(seed):
    doms = random_mix(seed)
    a = replay(doms, RunSpec.parse("dsa-lru-0mib-z")).timeline
    b = replay(doms, RunSpec.parse("none")).timeline
    cols = ["time_s", "domain", "private_pages", "shared_mapped", "reads_issued", "reads_avoided", "cow_breaks"]
    assert a.select(cols).equals(b.select(cols))


@pytest.mark.parametrize("seed", range(3))
def test_lru_hit_ratio_never_falls_as_the_area_grows(seed):
    doms = random_mix(seed, reads=2000)
    avoided = [int(replay(doms, RunSpec.make("dsa", eviction="lru", area_mib=a / 256, admit_zero=False)).timeline["reads_avoided"].sum())
               for a in (0, 1, 2, 5, 10, 20, 50, 100, 150, 200)]
    assert avoided == sorted(avoided)
    ideal = int(replay(doms, RunSpec.parse("oracle")).timeline["reads_avoided"].sum())
    assert avoided[-1] == ideal  # an area that holds every content avoids every repeat read
