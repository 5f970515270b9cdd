"""What a replay needs of one domain: its snapshots' times, their frames (all, or
a partition's), whether each holds a zero page, and its disk reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from xpipe.hashing import ZERO_HASH
from xpipe.sim.partition import Partition


@dataclass
class DomainTrace:
    """One domain; ``load(k)`` gives snapshot k's (hashes uint64, types uint8) in frame order.

    ``load_part(k, partition)``, when given, gives the partition's frames of snapshot k
    without the others (see ``snapshot``); ``zero_snapshots``, when given, the snapshots
    holding a zero page. Without them both are found with ``load``.
    """

    id: str
    times: np.ndarray
    load: Callable[[int], tuple[np.ndarray, np.ndarray]]
    frames: int
    read_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    read_hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    load_part: Callable[[int, Partition], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
    zero_snapshots: frozenset[int] | None = None

    def snapshot(self, k: int, part: Partition) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Snapshot k's frames whose content is in ``part``: (frame indexes, increasing; hashes; types)."""
        if self.load_part is not None:
            return self.load_part(k, part)
        h, ty = self.load(k)
        if len(h) != self.frames:
            raise ValueError(f"domain {self.id} snapshot {k}: {len(h)} frames, expected {self.frames}")
        keep = np.flatnonzero(part.holds(h))
        return keep, h[keep], ty[keep]

    def has_zero(self, k: int) -> bool:
        """Whether some frame of snapshot k (in any partition) holds the zero page."""
        if self.zero_snapshots is not None:
            return k in self.zero_snapshots
        return bool((self.load(k)[0] == ZERO_HASH).any())


def kept_snapshots(times: np.ndarray, every: int) -> np.ndarray:
    """Indexes of the snapshots a run replays: every k-th from the first, and the last
    always, so every interval covers the same window and only the sampling changes.
    Applied to each domain's own snapshots; a skipped snapshot is never loaded."""
    keep = np.zeros(len(times), dtype=bool)
    keep[::every] = True
    keep[-1:] = True
    return np.flatnonzero(keep)
