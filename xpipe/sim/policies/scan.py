"""ESX/KSM-style scanning: a scanner visits frames round-robin and merges equal ones."""

from __future__ import annotations

import numpy as np

from xpipe.sim.policy import Frames, Param, Policy, PolicyInfo, Shared, groups_of_two_or_more, register

#: When the scanner starts: at guest boot, or at the first snapshot.
STARTS = ("boot", "snapshot")


class Scanner(Policy):
    """ESX/KSM-style scanning, round-robin over all frames at ``rate`` pages/s.

    A frame becomes mergeable when two visits see the same content (KSM's
    unstable-tree checksum test); mergeable frames with equal content share
    one page. Content is constant between snapshots, so a frame visited twice
    within one interval is mergeable. No disk read is saved.

    ``start``: "boot" scans from guest time 0 to the first snapshot time, over
    the first snapshot's content (the only content known before it), and only
    over the domains present then (a domain that starts later is scanned from its
    first snapshot); "snapshot" starts at the first snapshot, so nothing is merged
    yet at that time.

    The scan order is every started frame of the mix (domains in mix order, frames
    in frame order), whatever its content, so a partition's replay visits its own
    frames exactly when the whole mix's replay does (``Frames.scan_order``). A visit to
    a frame whose content is another partition's sees a content this partition
    never holds, which counts as no visit here.
    """

    def __init__(self, pages_per_s: int, start: str):
        super().__init__()
        if pages_per_s <= 0:
            raise ValueError(f"scan rate must be > 0 pages/s, got {pages_per_s}")
        if start not in STARTS:
            raise ValueError(f"scan start must be one of {STARTS}, got {start!r}")
        self.rate = int(pages_per_s)
        self.start = start
        self._cursor = 0
        self._carry = 0.0
        self._seen: np.ndarray | None = None  # content hash at the last visit
        self._visited: np.ndarray | None = None  # visited, and the last visit saw a content of this partition
        self._mergeable: np.ndarray | None = None
        self._content: np.ndarray | None = None  # content during the last interval
        self._prev_present: np.ndarray | None = None
        self._prev_order: np.ndarray | None = None  # the previous step's scan order, and its length
        self._prev_started = 0

    def _scan_interval(self, present: np.ndarray, order: np.ndarray, started: int, dt: float):
        """Visit frames for ``dt`` seconds over the content of the previous step: the
        ``started`` frames in scan order, of which this replay holds those at ``order``."""
        budget = self.rate * dt + self._carry
        visits = int(budget)
        self._carry = budget - visits
        n = started
        if n == 0 or visits == 0:
            return
        laps, rest = divmod(visits, n)
        start = self._cursor % n
        end = start + rest
        self._cursor = end % n
        idx = np.flatnonzero(order >= 0)
        at = order[idx]
        count = laps + (((at >= start) & (at < end)) | (at < end - n))  # one more in [start, end) round the order
        held = present[idx]
        h = self._content[idx]
        repeat = self._visited[idx] & (self._seen[idx] == h)
        now = held & ((count >= 2) | ((count == 1) & repeat))
        self._mergeable[idx[now]] = True
        hit = count >= 1
        self._seen[idx[hit]] = h[hit]
        self._visited[idx[hit]] = held[hit]

    def step(self, f: Frames) -> Shared:
        n = len(f.hashes)
        if self._prev_present is None:
            self._seen = np.zeros(n, dtype=np.uint64)
            self._visited = np.zeros(n, dtype=bool)
            self._mergeable = np.zeros(n, dtype=bool)
            cow = np.zeros(n, dtype=bool)
            if self.start == "boot":
                self._content = f.hashes.copy()
                self._scan_interval(f.present, f.scan_order(), f.started, f.time_s)
        else:
            self._scan_interval(self._prev_present, self._prev_order, self._prev_started, f.dt_s)
            merged_before, _ = groups_of_two_or_more(self._content, self._mergeable & self._prev_present)
            cow = merged_before & f.changed
            self._mergeable &= ~f.changed
        # copies: the replay overwrites its frame arrays in place at the next step
        self._content = f.hashes.copy()
        self._prev_present = f.present.copy()
        self._prev_order, self._prev_started = f.scan_order(), f.started
        mapped, groups = groups_of_two_or_more(f.hashes, self._mergeable & f.present)
        return Shared(np.flatnonzero(mapped), groups, 0, np.flatnonzero(cow))


def _label(p: dict) -> str:
    start = "" if p["scan_start"] == "boot" else ", from 1st snapshot"
    return f"scan {p['scan_pages_per_s']:,} pages/s{start}"


register(PolicyInfo(
    name="scan", doc="ESX/KSM-style scanner merging equal frames it has visited twice",
    factory=lambda p, ctx: Scanner(p["scan_pages_per_s"], p["scan_start"]), label=_label,
    colour="#1f77b4", order=2,
    params=(
        Param("scan_pages_per_s", int, "pages/s", "frames the scanner visits per second (ESX default 200)",
              default=(200, 10000), token="r{}", minimum=1),
        Param("scan_start", str, "", "when scanning starts: boot (guest time 0, over the first "
              "snapshot's content) or snapshot (the first snapshot; nothing merged before it)",
              default=("boot",), choices=STARTS),
    ),
))
