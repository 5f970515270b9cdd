"""No sharing: every guest frame is a host page (the baseline every saving is measured against)."""

from __future__ import annotations

import numpy as np

from xpipe.sim.policy import Policy, PolicyInfo, register


class NoSharing(Policy):

    def share(self, f):
        return np.zeros(len(f.hashes), dtype=bool), 0, 0


register(PolicyInfo(
    name="none", doc="every guest frame is a host page", factory=lambda params, ctx: NoSharing(),
    label=lambda params: "none", colour="#7f7f7f", order=0, always=True,
))
