"""The design under study: a designated sharing area (Jeon et al., APPT 2007)."""

from __future__ import annotations

import numpy as np

from xpipe.hashing import PAGES_PER_MIB, ZERO_HASH
from xpipe.sim.area import EVICTIONS, SharingArea
from xpipe.sim.policy import FILE_TYPES, Param, Policy, PolicyInfo, number, register


class DesignatedArea(Policy):
    """The design under study: a designated sharing area of ``area_pages`` pages.

    Admission: the content of every disk read that misses enters the area; with
    ``admit_zero`` the zero page enters too whenever a frame holds zeros.
    A domain frame is mapped from the area when its content is there and the
    guest would map it there: a page-cache page of a disk block (types file_*)
    or, with ``admit_zero``, a zero page. Evicting a content that frames map
    leaves them private copies (they count as private from the next step).

    The area's contents follow from the reads and the zero page alone, so a
    partition's replay runs the same area; it counts the held pages of its own
    contents (``own``: bool per id).
    """

    def __init__(self, area_pages: int, eviction: str, admit_zero: bool, universe: np.ndarray,
                 max_accesses: int, own: np.ndarray):
        super().__init__()
        if eviction not in EVICTIONS:
            raise ValueError(f"eviction must be one of {tuple(EVICTIONS)}, got {eviction!r}")
        self.area_pages, self.eviction, self.admit_zero = int(area_pages), eviction, bool(admit_zero)
        # universe: sorted unique hashes of all reads (and the zero page): id = position
        self.universe = universe
        self.own = own
        self.area = SharingArea(area_pages, eviction, len(universe), max_accesses)
        self._zero_id = int(np.searchsorted(universe, ZERO_HASH))
        if admit_zero and (self._zero_id >= len(universe) or universe[self._zero_id] != ZERO_HASH):
            raise ValueError("universe must hold the zero page hash when admit_zero is set")

    def reads(self, ids):
        return self.area.access(ids)

    def share(self, f):
        if self.admit_zero and f.zero_present:
            self.area.access(np.array([self._zero_id]))
        idx, ids = f.derived(("dsa", self.admit_zero), lambda: self._candidates(f))
        return idx[self.area.in_area[ids]], int(np.count_nonzero(self.area.in_area & self.own)), self.area_pages

    def _candidates(self, f) -> tuple[np.ndarray, np.ndarray]:
        """The frames the guest would map from the area whose content some read (or the zero
        page) has, and those contents' ids: only they can be in the area."""
        wanted = f.present & np.isin(f.types, FILE_TYPES)
        if self.admit_zero:
            wanted |= f.present & (f.hashes == ZERO_HASH)
        idx = np.flatnonzero(wanted)
        ids = np.minimum(np.searchsorted(self.universe, f.hashes[idx]), len(self.universe) - 1)
        known = self.universe[ids] == f.hashes[idx]  # (the universe holds the zero page: never empty)
        return idx[known], ids[known]


def area_pages(area_mib: float) -> int:
    return round(area_mib * PAGES_PER_MIB)


def _whole_pages(area_mib: float) -> str | None:
    if area_pages(area_mib) != area_mib * PAGES_PER_MIB:
        return f"is not a whole number of 4 KiB pages ({PAGES_PER_MIB} per MiB)"
    return None


def _label(p: dict) -> str:
    zero = " + zero page" if p["admit_zero"] else ""
    return f"dsa {p['eviction'].upper()} {number(p['area_mib'])} MiB{zero}"


register(PolicyInfo(
    name="dsa", doc="the designated sharing area: disk-read contents shared once, evicted by a rule",
    factory=lambda p, ctx: DesignatedArea(area_pages(p["area_mib"]), p["eviction"], p["admit_zero"],
                                          ctx.universe, ctx.max_accesses, ctx.own),
    label=_label, colour="#d62728", order=3, has_area=True,
    params=(
        Param("eviction", str, "", "the area's eviction rule", default=tuple(EVICTIONS), choices=tuple(EVICTIONS)),
        Param("area_mib", float, "MiB", "the sharing area's size", default=(1, 4, 16, 64), token="{}mib",
              minimum=0, check=_whole_pages),
        Param("admit_zero", bool, "", "whether the zero page enters the area", default=(False,), token="z"),
    ),
))
