"""Sharing policies: one small class each behind one interface.

The replay (xpipe.sim.replay) calls, for every snapshot time in order:
``reads(ids)`` with the disk reads since the previous time, then
``step(frames)`` with every guest frame's content at that time. A policy
answers which frames are mapped from shared memory, how many pages shared
memory holds, and which frames took a copy-on-write break.

Writes are inferred from snapshots: a frame whose content differs from the
previous snapshot was written once, at the later snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from xpipe.hashing import ZERO_HASH
from xpipe.schemas import PAGE_TYPES
from xpipe.sim.area import EVICTIONS, SharingArea, group_ids

POLICIES = ("none", "zero", "oracle", "scan", "dsa")

#: Page types a cooperating guest maps from the area: page-cache pages of disk blocks.
FILE_TYPES = np.array([PAGE_TYPES.index(t) for t in ("file_code", "file_data", "file")], dtype=np.uint8)


@dataclass
class Frames:
    """Every frame of every domain of the mix at one time (domains concatenated)."""

    time_s: float
    dt_s: float  # time since the previous step (0 at the first)
    hashes: np.ndarray  # uint64 content hash
    types: np.ndarray  # uint8 index into PAGE_TYPES
    present: np.ndarray  # bool: the frame's domain has started
    changed: np.ndarray  # bool: present before and content differs from the previous step


@dataclass
class Shared:
    mapped: np.ndarray  # bool per frame: mapped from shared memory
    used: int  # pages shared memory holds
    reserved: int  # sharing area's reserved pages (dsa), else 0
    cow: np.ndarray  # bool per frame: a write broke its sharing at this step


def groups_of_two_or_more(hashes: np.ndarray, candidates: np.ndarray) -> tuple[np.ndarray, int]:
    """Among ``candidates`` frames, those whose content at least one other candidate has.

    Returns (mask, number of such contents).
    """
    idx = np.flatnonzero(candidates)
    if len(idx) == 0:
        return np.zeros(len(hashes), dtype=bool), 0
    ids, n = group_ids(hashes[idx])
    counts = np.bincount(ids, minlength=n)
    multi = counts[ids] >= 2
    mask = np.zeros(len(hashes), dtype=bool)
    mask[idx[multi]] = True
    return mask, int(np.count_nonzero(counts >= 2))


class Policy:
    name = "base"

    def __init__(self):
        self._prev_mapped: np.ndarray | None = None

    def reads(self, ids: np.ndarray) -> np.ndarray:
        """Disk reads (content ids) in order; True where the read was avoided."""
        return np.zeros(len(ids), dtype=bool)

    def share(self, f: Frames) -> tuple[np.ndarray, int, int]:
        """(mapped mask, pages held, pages reserved) at ``f.time_s``."""
        raise NotImplementedError

    def step(self, f: Frames) -> Shared:
        prev = self._prev_mapped
        cow = (prev & f.changed) if prev is not None else np.zeros(len(f.hashes), dtype=bool)
        mapped, used, reserved = self.share(f)
        self._prev_mapped = mapped
        return Shared(mapped, used, reserved, cow)


class NoSharing(Policy):
    name = "none"

    def share(self, f):
        return np.zeros(len(f.hashes), dtype=bool), 0, 0


class ZeroPages(Policy):
    """Only zero pages share, all on one host zero page."""

    name = "zero"

    def share(self, f):
        mapped = f.present & (f.hashes == ZERO_HASH)
        return mapped, int(mapped.any()), 0


class Oracle(Policy):
    """Every content held by two or more frames is kept once, at every time;
    every read of a content read before is avoided."""

    name = "oracle"

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
        mapped, n = groups_of_two_or_more(f.hashes, f.present)
        return mapped, n, 0


class Scanner(Policy):
    """ESX/KSM-style scanning, round-robin over all frames at ``rate`` pages/s.

    A frame becomes mergeable when two visits see the same content (KSM's
    unstable-tree checksum test); mergeable frames with equal content share
    one page. Content is constant between snapshots, so a frame visited twice
    within one interval is mergeable. No disk read is saved.
    """

    name = "scan"

    def __init__(self, pages_per_s: int):
        super().__init__()
        if pages_per_s <= 0:
            raise ValueError(f"scan rate must be > 0 pages/s, got {pages_per_s}")
        self.rate = int(pages_per_s)
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
        else:
            self._scan_interval(self._prev_present, f.dt_s)
            merged_before, _ = groups_of_two_or_more(self._content, self._mergeable & self._prev_present)
            cow = merged_before & f.changed
            self._mergeable &= ~f.changed
        self._content = f.hashes
        self._prev_present = f.present
        mapped, groups = groups_of_two_or_more(f.hashes, self._mergeable & f.present)
        return Shared(mapped, groups, 0, cow)


class DesignatedArea(Policy):
    """The design under study: a designated sharing area of ``capacity`` pages.

    Admission: the content of every disk read that misses enters the area; with
    ``admit_zero`` the zero page enters too whenever a frame holds zeros.
    A domain frame is mapped from the area when its content is there and the
    guest would map it there: a page-cache page of a disk block (types file_*)
    or, with ``admit_zero``, a zero page. Evicting a content that frames map
    leaves them private copies (they count as private from the next step).
    """

    name = "dsa"

    def __init__(self, capacity: int, eviction: str, admit_zero: bool, universe: np.ndarray,
                 max_accesses: int):
        super().__init__()
        if eviction not in EVICTIONS:
            raise ValueError(f"eviction must be one of {EVICTIONS}, got {eviction!r}")
        self.capacity, self.eviction, self.admit_zero = int(capacity), eviction, bool(admit_zero)
        # universe: sorted unique hashes of all reads (and the zero page): id = position
        self.universe = universe
        self.area = SharingArea(capacity, eviction, len(universe), max_accesses)
        self._zero_id = int(np.searchsorted(universe, ZERO_HASH))
        if admit_zero and (self._zero_id >= len(universe) or universe[self._zero_id] != ZERO_HASH):
            raise ValueError("universe must hold the zero page hash when admit_zero is set")

    def reads(self, ids):
        return self.area.access(ids)

    def share(self, f):
        is_zero = f.hashes == ZERO_HASH
        if self.admit_zero and (f.present & is_zero).any():
            self.area.access(np.array([self._zero_id]))
        wanted = f.present & np.isin(f.types, FILE_TYPES)
        if self.admit_zero:
            wanted |= f.present & is_zero
        idx = np.flatnonzero(wanted)
        pos = np.searchsorted(self.universe, f.hashes[idx])
        pos[pos >= len(self.universe)] = 0
        known = self.universe[pos] == f.hashes[idx] if len(self.universe) else np.zeros(len(idx), bool)
        held = known & self.area.in_area[pos]
        mapped = np.zeros(len(f.hashes), dtype=bool)
        mapped[idx[held]] = True
        return mapped, self.area.used, self.capacity
