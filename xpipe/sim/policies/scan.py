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
        self._visited: np.ndarray | None = None
        self._mergeable: np.ndarray | None = None
        self._content: np.ndarray | None = None  # content during the last interval

    def _scan_interval(self, present: np.ndarray, dt: float):
        """Visit frames for ``dt`` seconds over the content of the previous step."""
        budget = self.rate * dt + self._carry
        visits = int(budget)
        self._carry = budget - visits
        idx = np.flatnonzero(present)
        n = len(idx)
        if n == 0 or visits == 0:
            return
        laps, rest = divmod(visits, n)
        count = np.full(n, laps, dtype=np.int64)
        start = self._cursor % n
        end = start + rest
        count[start:min(end, n)] += 1
        if end > n:
            count[: end - n] += 1
        self._cursor = end % n
        h = self._content[idx]
        repeat = self._visited[idx] & (self._seen[idx] == h)
        now = (count >= 2) | ((count == 1) & repeat)
        self._mergeable[idx[now]] = True
        hit = count >= 1
        self._seen[idx[hit]] = h[hit]
        self._visited[idx[hit]] = True

    def step(self, f: Frames) -> Shared:
        n = len(f.hashes)
        if self._seen is None:
            self._seen = np.zeros(n, dtype=np.uint64)
            self._visited = np.zeros(n, dtype=bool)
            self._mergeable = np.zeros(n, dtype=bool)
            cow = np.zeros(n, dtype=bool)
            if self.start == "boot":
                self._content = f.hashes.copy()
                self._scan_interval(f.present, f.time_s)
        else:
            self._scan_interval(self._prev_present, f.dt_s)
            merged_before, _ = groups_of_two_or_more(self._content, self._mergeable & self._prev_present)
            cow = merged_before & f.changed
            self._mergeable &= ~f.changed
        # copies: the replay overwrites its frame arrays in place at the next step
        self._content = f.hashes.copy()
        self._prev_present = f.present.copy()
        mapped, groups = groups_of_two_or_more(f.hashes, self._mergeable & f.present)
        return Shared(mapped, groups, 0, cow)


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
