"""The ideal bound: every content held twice is kept once; every repeat read is avoided."""

from __future__ import annotations

import numpy as np

from xpipe.sim.policy import Policy, PolicyInfo, register


class Oracle(Policy):
    """Every content held by two or more frames is kept once, at every time;
    every read of a content read before is avoided."""


    def __init__(self, n_ids: int):
        super().__init__()
        self._read_before = np.zeros(n_ids, dtype=bool)

    def reads(self, ids):
        """Every read whose content some domain read before is avoided (the ideal bound)."""
        avoided = self._read_before[ids].copy()
        _, first = np.unique(ids, return_index=True)
        repeat = np.ones(len(ids), dtype=bool)
        repeat[first] = False
        avoided |= repeat
        self._read_before[ids] = True
        return avoided

    def share(self, f):
        mapped, n = f.shared_contents()
        return mapped, n, 0


register(PolicyInfo(
    name="oracle", doc="every content held by two or more frames kept once; every repeat read avoided",
    factory=lambda params, ctx: Oracle(len(ctx.universe)), label=lambda params: "oracle (ideal)",
    colour="#2ca02c", order=9, always=True,
))
