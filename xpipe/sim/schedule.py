"""The first pass of a replay: what every partition of a mix shares (xpipe.sim.partition).

It needs no frame's content, only each domain's snapshot times and frame count,
its disk reads, and which of its snapshots hold a zero page. It fixes

- the snapshot times replayed, and the snapshot each domain shows at each;
- every disk read in replay order and the time it is fed at, and the contents
  read (the ids the dsa area and the oracle index);
- at each time, the domains that have started, hence each frame's place in the
  scanner's round-robin order (domains in mix order, frames in frame order), and
  whether a started frame holds the zero page (which the dsa area may admit).

A policy's state that is not per content (the dsa area's contents over time, the
oracle's contents read before, the scanner's cursor) follows from these alone,
so every partition's replay has the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from xpipe.hashing import ZERO_HASH
from xpipe.sim.area import dense_ids
from xpipe.sim.trace import DomainTrace, kept_snapshots


@dataclass
class Schedule:
    times: np.ndarray  # snapshot times replayed; an I/O-only mix has one, after its last read
    shown: np.ndarray  # int64 (time, domain): the snapshot the domain shows; -1 before its first
    frames: np.ndarray  # int64 per domain
    zero: np.ndarray  # bool per time: some started frame of the mix holds the zero page
    read_time: np.ndarray  # every read in replay order (ties: mix order, then trace order)
    read_dom: np.ndarray  # intp: the reading domain's index
    read_hash: np.ndarray  # uint64
    read_ids: np.ndarray  # int64: the read content's position in universe
    read_end: np.ndarray  # per time: reads fed before its frames end here (the rest after the last time's)
    universe: np.ndarray  # sorted unique hashes of every read and the zero page

    @property
    def max_accesses(self) -> int:
        """A bound on area lookups over the replay: every read and one zero page per time."""
        return len(self.read_ids) + len(self.times)

    def scan_order(self, k: int) -> tuple[np.ndarray, int]:
        """At time k: each domain's first place in the scan order (meaningful for started
        domains), and the number of started frames the scanner goes round."""
        sizes = np.where(self.shown[k] >= 0, self.frames, 0)
        ends = np.cumsum(sizes)
        return ends - sizes, int(ends[-1]) if len(ends) else 0


def _merged_reads(domains: Sequence[DomainTrace]):
    """All reads in replay order: (time, domain index, hash), the hashes followed by the zero page's.

    Ties keep mix order, then trace order: what a stable sort of every read by time
    gives, by a merge that needs no sort of every read (a domain's reads are in
    time order; one whose are not is put in order first)."""
    from xpipe.sim.loops import _merge

    t = np.concatenate([np.zeros(0)] + [d.read_times for d in domains]).astype(np.float64, copy=False)
    h = np.concatenate([np.zeros(0, np.uint64)] + [d.read_hashes for d in domains]).astype(np.uint64, copy=False)
    bounds = np.cumsum([0] + [len(d.read_times) for d in domains], dtype=np.int64)
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        if hi - lo > 1 and np.any(t[lo + 1:hi] < t[lo:hi - 1]):
            order = lo + np.argsort(t[lo:hi], kind="stable")
            t[lo:hi], h[lo:hi] = t[order], h[order]
    n = len(t)
    # intp: np.bincount takes the domain indexes without a copy
    out_t, out_dom, out_h = np.empty(n), np.empty(n, dtype=np.intp), np.empty(n + 1, dtype=np.uint64)
    _merge(t, h, bounds, out_t, out_dom, out_h)
    out_h[n] = ZERO_HASH
    return out_t, out_dom, out_h


def schedule(domains: Sequence[DomainTrace], snapshot_every: int) -> Schedule:
    """The first pass over ``domains`` (in mix order), replaying every ``snapshot_every``-th snapshot."""
    kept = [kept_snapshots(d.times, snapshot_every) for d in domains]
    times = np.unique(np.concatenate([d.times[k] for d, k in zip(domains, kept)]))
    r_time, r_dom, r_hash = _merged_reads(domains)
    if not len(times):  # I/O-only domains: one time, after every read, with no frames
        times = np.array([r_time.max() if len(r_time) else 0.0])
    universe, r_ids = dense_ids(r_hash)  # = np.unique(..., return_inverse=True), the zero page included
    shown = np.full((len(times), len(domains)), -1, dtype=np.int64)
    for i, (d, k) in enumerate(zip(domains, kept)):
        if len(k):
            j = np.searchsorted(d.times[k], times, side="right") - 1
            shown[:, i] = np.where(j >= 0, k[np.maximum(j, 0)], -1)
    zero = np.zeros(shown.shape, dtype=bool)  # (time, domain): the snapshot shown holds the zero page
    for i, d in enumerate(domains):
        for s in np.unique(shown[:, i][shown[:, i] >= 0]):
            zero[shown[:, i] == s, i] = d.has_zero(int(s))
    return Schedule(times=times, shown=shown, frames=np.array([d.frames for d in domains], dtype=np.int64),
                    zero=zero.any(axis=1), read_time=r_time, read_dom=r_dom, read_hash=r_hash[:-1],
                    read_ids=r_ids[:-1],
                    read_end=np.searchsorted(r_time, times, side="right"), universe=universe)
