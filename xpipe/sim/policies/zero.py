"""Zero-page sharing: every all-zero frame maps one host zero page."""

from __future__ import annotations

import numpy as np

from xpipe.hashing import ZERO_HASH
from xpipe.sim.policy import Policy, PolicyInfo, register


class ZeroPages(Policy):
    """Only zero pages share, all on one host zero page."""


    def share(self, f):
        mapped = f.derived("zero", lambda: np.flatnonzero(f.present & (f.hashes == ZERO_HASH)))
        return mapped, int(len(mapped) > 0), 0


register(PolicyInfo(
    name="zero", doc="frames holding only zeros share one host page", factory=lambda params, ctx: ZeroPages(),
    label=lambda params: "zero pages", colour="#8c564b", order=1,
))
