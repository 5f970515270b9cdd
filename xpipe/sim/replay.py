"""The replay loop: domains' snapshots and disk reads, in time order, through a policy.

At each snapshot time t (the union of all domains' snapshot times) the replay
1. feeds the policy every disk read with time <= t not fed yet, in time order
   (ties: mix order, then trace order); reads after the last snapshot go with
   the last time, fed after that time's frames;
2. shows the policy every frame's content at t: a domain's latest snapshot at
   or before t; a domain with no snapshot yet is absent;
3. records, per domain, private frames, frames mapped from shared memory,
   reads issued and avoided, COW breaks; per time, pages shared memory holds.

A domain with no snapshots (an I/O-only trace) has no frames and only reads;
a mix of such domains is replayed at one time, after its last read.

A replay holds one partition of the mix's contents (xpipe.sim.partition; the
whole mix is the partition of one): it loads only the frames holding the
partition's contents and counts only those contents' frames, shared pages and
reads. The first pass (xpipe.sim.schedule) gives it what all partitions share.
The whole mix's results are the partitions' counts added up (``replay``).
A frame whose content moves to another partition leaves this one's replay as
a write; its place is kept (a partition's frames are those it holds at some
time), so a partition's memory is its share of the mix plus the frames that
move in or out over the replay.

Runs over the same domains, snapshots and partition replay the same frames:
``prepare`` builds them once (the first pass, and each time's frames) and
``replay_prepared`` runs one policy over them. Each time's frames are kept for
the next run when they fit in KEEP_BYTES; beyond it only one time's frames are
in memory at once, so a mix's size is bounded by its largest single time, not by
its number of snapshots (but the loader keeps a domain's snapshots when they
fit, xpipe.sim.load).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from xpipe.pagetypes import PAGE_TYPES
from xpipe.sim import policy as P
from xpipe.sim.area import group_ids
from xpipe.sim.partition import SCOPES, TYPE_COUNTS_OWN, WHOLE, Partition, merge_timelines, types_table
from xpipe.sim.runs import RunSpec
from xpipe.sim.schedule import Schedule, schedule
from xpipe.sim.tables import TIMELINE_OWN, own_schema
from xpipe.sim.trace import DomainTrace, kept_snapshots

__all__ = ["DomainTrace", "PartReplay", "Prepared", "Replay", "kept_snapshots", "merge_replays", "prepare", "replay",
           "replay_partition", "replay_prepared"]

log = logging.getLogger(__name__)

#: Type counts' cells: page type and scope (intra, inter), as type * 2 + inter.
_CELLS = 2 * len(PAGE_TYPES)


@dataclass
class Replay:
    timeline: pl.DataFrame  # xpipe.sim.tables.TIMELINE_OWN
    types: pl.DataFrame  # xpipe.sim.tables.TYPES_OWN


@dataclass
class PartReplay:
    """A partition's share of a replay."""

    timeline: pl.DataFrame  # TIMELINE_OWN, counting the partition's contents only
    type_counts: pl.DataFrame  # xpipe.sim.partition.TYPE_COUNTS_OWN


def _feed_reads(policy: P.Policy, s: Schedule, own: np.ndarray, lo: int, hi: int):
    """Feed reads lo:hi to the policy. Per domain: (reads, the partition's reads, those avoided)."""
    n_dom = len(s.frames)
    avoided = policy.reads(s.read_ids[lo:hi])
    dom, mine = s.read_dom[lo:hi], own[lo:hi]
    return (np.bincount(dom, minlength=n_dom), np.bincount(dom[mine], minlength=n_dom),
            np.bincount(dom[mine & avoided], minlength=n_dom))


@functools.lru_cache(maxsize=16)
def _every_frame(frames: int) -> np.ndarray:
    every = np.arange(frames, dtype=np.int64)
    every.flags.writeable = False
    return every


def _held_frames(domains: Sequence[DomainTrace], s: Schedule, part: Partition) -> list[np.ndarray]:
    """Per domain, the frames (indexes, increasing) whose content is the partition's at some time replayed."""
    if part.whole:
        return [_every_frame(d.frames) for d in domains]
    held = []
    for i, d in enumerate(domains):
        shown = np.unique(s.shown[:, i][s.shown[:, i] >= 0])
        held.append(np.unique(np.concatenate([np.zeros(0, np.int64)]
                                             + [d.snapshot(int(k), part)[0].astype(np.int64) for k in shown])))
    return held


def _scan_order(s: Schedule, k: int, held: list[np.ndarray], offsets: np.ndarray) -> np.ndarray:
    """Each frame held's place in the scan order at time k; -1 where its domain has not started."""
    first, _ = s.scan_order(k)
    order = np.full(offsets[-1], -1, dtype=np.int64)
    for i in np.flatnonzero(s.shown[k] >= 0):
        order[offsets[i]:offsets[i + 1]] = first[i] + held[i]
    return order


#: Bytes a kept step takes per frame: its arrays and what runs derive from them (P.Frames.derived).
_STEP_BYTES = 40
#: Steps kept for the next run of the same domains, snapshots and partition when they fit
#: in this many bytes (a sweep replays them once per run); beyond it each run rebuilds them.
KEEP_BYTES = 1 << 30


@dataclass
class Prepared:
    """What every run over the same domains, snapshots kept and partition shares: the
    first pass, the frames held, and each time's frames (``steps``)."""

    domains: Sequence[DomainTrace]
    part: Partition
    schedule: Schedule
    held: list[np.ndarray]
    offsets: np.ndarray  # the domains' first frame among the frames held, and the total
    frame_dom: np.ndarray  # int32: each frame's domain
    own_reads: np.ndarray  # bool per read: its content is the partition's
    context: P.ReplayContext
    reuse: bool = False  # more than one run will replay the steps
    _kept: list[P.Frames] | None = None

    def steps(self) -> Iterator[P.Frames]:
        """Each time's frames, in time order; kept after the first pass for the next run
        (``reuse``) when they fit in KEEP_BYTES."""
        if self._kept is not None:
            return iter(self._kept)
        if not self.reuse or int(self.offsets[-1]) * _STEP_BYTES * len(self.schedule.times) > KEEP_BYTES:
            return self._build(keep=False)
        self._kept = list(self._build(keep=True))
        return iter(self._kept)

    def _build(self, keep: bool) -> Iterator[P.Frames]:
        """The frames at each time, updated in place from the snapshots each domain shows
        (copies of each time's when ``keep``)."""
        s, part, held, offsets = self.schedule, self.part, self.held, self.offsets
        n = int(offsets[-1])
        hashes = np.zeros(n, dtype=np.uint64)
        types = np.zeros(n, dtype=np.uint8)
        present = np.zeros(n, dtype=bool)
        # the scan order since the domains last started, computed when a policy asks (the scanner does)
        order_since = functools.lru_cache(maxsize=1)(lambda k: _scan_order(s, k, held, offsets))
        since, started = 0, 0
        prev_t = s.times[0]
        for k, t in enumerate(s.times):
            changed = np.zeros(n, dtype=bool)
            loading = np.flatnonzero((s.shown[k] >= 0) & (s.shown[k] != (s.shown[k - 1] if k else -1)))
            for i in loading:
                index, h, ty = self.domains[i].snapshot(int(s.shown[k, i]), part)
                sl = slice(offsets[i], offsets[i + 1])
                was = k > 0 and s.shown[k - 1, i] >= 0  # the domain showed another snapshot before
                if len(index) == len(held[i]):  # every frame held, in order
                    if was:  # a frame written
                        changed[sl] = present[sl] & (hashes[sl] != h)
                    hashes[sl], types[sl], present[sl] = h, ty, True
                    continue
                at = np.searchsorted(held[i], index.astype(np.int64))  # positions among the domain's frames held
                now = np.zeros(len(held[i]), dtype=bool)
                now[at] = True
                at += offsets[i]
                if was:
                    changed[sl] = present[sl] & ~now  # contents that left the partition
                    changed[at] |= present[at] & (hashes[at] != h)  # frames written
                present[sl] = now
                hashes[at], types[at] = h, ty
            if len(loading) and (not k or (s.shown[k - 1][loading] < 0).any()):  # domains started
                since, started = k, s.scan_order(k)[1]
            state = (hashes.copy(), types.copy(), present.copy()) if keep else (hashes, types, present)
            yield P.Frames(float(t), float(t - prev_t), *state, changed,
                           functools.partial(order_since, since), started, bool(s.zero[k]))
            prev_t = t


def prepare(domains: Sequence[DomainTrace], snapshot_every: int, part: Partition = WHOLE,
            reuse: bool = False) -> Prepared:
    """The first pass over ``domains`` (in mix order) for runs replaying every ``snapshot_every``-th
    snapshot of the frames whose content is in ``part``; ``reuse``: more than one run will."""
    s = schedule(domains, snapshot_every)
    held = _held_frames(domains, s, part)
    sizes = [len(h) for h in held]
    return Prepared(domains, part, s, held, offsets=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                    frame_dom=np.repeat(np.arange(len(domains), dtype=np.int32), sizes),
                    own_reads=part.holds(s.read_hash),
                    context=P.ReplayContext(s.universe, s.max_accesses, part.holds(s.universe)), reuse=reuse)


def _tally_types(tally: dict, types: np.ndarray, idx: np.ndarray, inv: np.ndarray, groups: int,
                 frame_dom: np.ndarray) -> None:
    """Add this time's mapped frames ``idx`` (``inv``: their content's group among ``groups``) to
    ``tally``: (group size, cell) -> frames, a cell being page type * 2 + (1 if inter-domain else 0)."""
    from xpipe.sim.loops import _inter_domain

    counts = np.bincount(inv, minlength=groups)
    cell = types[idx].astype(np.int64) * 2 + _inter_domain(inv, frame_dom[idx], groups)[inv]
    seen = np.bincount(counts)  # groups per size: few sizes occur, each numbered by its rank
    sizes, rank = np.flatnonzero(seen), np.cumsum(seen > 0) - 1
    frames = np.bincount(rank[counts[inv]] * _CELLS + cell, minlength=len(sizes) * _CELLS)
    for key in np.flatnonzero(frames).tolist():
        size = int(sizes[key // _CELLS])
        tally[(size, key % _CELLS)] = tally.get((size, key % _CELLS), 0) + int(frames[key])


def _type_counts(tally: dict, times: int) -> pl.DataFrame:
    rows = [(PAGE_TYPES[cell // 2], SCOPES[cell % 2], size, n, times) for (size, cell), n in sorted(tally.items())]
    return pl.DataFrame(rows, schema=own_schema(TYPE_COUNTS_OWN), orient="row")


def replay_prepared(p: Prepared, spec: RunSpec, with_types: bool = True) -> PartReplay:
    """Replay the prepared frames under ``spec`` (whose snapshot_every ``p`` was prepared for);
    see the module docstring. ``with_types=False`` skips the shared-page-type accounting."""
    s, domains, frame_dom = p.schedule, p.domains, p.frame_dom
    n_dom = len(domains)
    policy = spec.make_policy(p.context)
    tally: dict[tuple[int, int], int] = {}
    rows = []
    read_at = 0
    for k, f in enumerate(p.steps()):
        end = int(s.read_end[k])
        dom_reads, own_issued, own_avoided = _feed_reads(policy, s, p.own_reads, read_at, end)
        read_at = end
        shared = policy.step(f)
        if k == len(s.times) - 1 and read_at < len(s.read_ids):
            tail = _feed_reads(policy, s, p.own_reads, read_at, len(s.read_ids))
            dom_reads, own_issued, own_avoided = dom_reads + tail[0], own_issued + tail[1], own_avoided + tail[2]

        idx = shared.mapped
        # the mapped frames' contents only: a run that maps few frames numbers few
        inv, area_mapped = group_ids(f.hashes[idx])
        if with_types and len(idx):
            _tally_types(tally, f.types, idx, inv, area_mapped, frame_dom)
        per_dom_present = f.derived("per_domain", lambda f=f: np.bincount(frame_dom[f.present], minlength=n_dom))
        per_dom_mapped = np.bincount(frame_dom[idx], minlength=n_dom)
        per_dom_cow = np.bincount(frame_dom[shared.cow], minlength=n_dom)
        for i, d in enumerate(domains):
            if s.shown[k, i] < 0 and dom_reads[i] == 0:
                continue
            rows.append((f.time_s, d.id,
                         int(per_dom_present[i] - per_dom_mapped[i]), int(per_dom_mapped[i]),
                         int(shared.used), area_mapped, int(shared.reserved),
                         int(own_issued[i] - own_avoided[i]), int(own_avoided[i]), int(per_dom_cow[i])))
    timeline = pl.DataFrame(rows, schema=own_schema(TIMELINE_OWN), orient="row")
    return PartReplay(timeline, _type_counts(tally, len(s.times)))


def replay_partition(domains: Sequence[DomainTrace], spec: RunSpec, part: Partition = WHOLE,
                     with_types: bool = True) -> PartReplay:
    """Replay the frames of ``domains`` (in mix order) whose content is in ``part`` under ``spec``."""
    return replay_prepared(prepare(domains, spec.snapshot_every, part), spec, with_types)


def merge_replays(parts: Sequence[PartReplay]) -> Replay:
    """The whole mix's replay from every partition's share."""
    return Replay(merge_timelines([p.timeline for p in parts]),
                  types_table(pl.concat([p.type_counts for p in parts])))


def replay(domains: Sequence[DomainTrace], spec: RunSpec, with_types: bool = True, partitions: int = 1) -> Replay:
    """Replay ``domains`` (in mix order) under ``spec``: every partition of ``partitions``
    (one: the whole mix at once), added up. The results do not depend on ``partitions``."""
    return merge_replays([replay_partition(domains, spec, Partition(i, partitions), with_types)
                          for i in range(partitions)])
