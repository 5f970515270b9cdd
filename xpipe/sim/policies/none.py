"""No sharing: every guest frame is a host page (the baseline every saving is measured against)."""

from __future__ import annotations

from xpipe.sim.policy import NO_FRAMES, Policy, PolicyInfo, register


class NoSharing(Policy):

    def share(self, f):
        return NO_FRAMES, 0, 0


register(PolicyInfo(
    name="none", doc="every guest frame is a host page", factory=lambda params, ctx: NoSharing(),
    label=lambda params: "none", colour="#7f7f7f", order=0, always=True,
))
