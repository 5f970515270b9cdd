"""Compile the replay's numba loops once, before any replay job (rule compile_replay_loops).

numba keeps what it compiles beside the module (``cache=True``: xpipe/sim/__pycache__). In a
fresh clone the replay jobs that start side by side would each compile every loop (seconds
each, on cores the replays need); one small job compiles them first. A replay of two tiny
in-memory domains under every policy and eviction rule takes each loop through the types
the replay gives it.
"""

from __future__ import annotations

import numpy as np

from xpipe.hashing import ZERO_HASH


def compile_loops() -> int:
    """Replay a tiny mix under every run of every policy; the number of runs replayed."""
    from xpipe.sim.area import EVICTIONS
    from xpipe.sim.policies import REGISTRY
    from xpipe.sim.replay import replay
    from xpipe.sim.runs import expand_sweep, sweep_schema
    from xpipe.sim.trace import DomainTrace

    sweep = {k: v["default"] for k, v in sweep_schema()["properties"].items()}
    sweep |= {"policies": list(REGISTRY), "eviction": list(EVICTIONS), "admit_zero": [False, True],
              "area_mib": [1 / 256]}  # one page: the loops evict
    z, a, b, c = ZERO_HASH, np.uint64(11), np.uint64(12), np.uint64(13)
    snaps = [np.array([z, a, b, c], dtype=np.uint64), np.array([z, a, a, c], dtype=np.uint64)]
    types = np.zeros(4, dtype=np.uint8)

    def domain(name: str, shift: float) -> DomainTrace:
        return DomainTrace(id=name, times=np.array([1.0, 2.0]), load=lambda k: (snaps[k], types), frames=4,
                           read_times=np.array([0.5 + shift, 1.5]), read_hashes=np.array([a, b], dtype=np.uint64))

    runs = expand_sweep(sweep)
    for spec in runs:
        replay([domain("a", 0.0), domain("b", 0.1)], spec, with_types=True, partitions=1)
    return len(runs)
