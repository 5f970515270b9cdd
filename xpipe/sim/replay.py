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

Only one time's frames are in memory at once, so a mix's size is bounded by
its largest single time, not by its number of snapshots.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from xpipe.hashing import ZERO_HASH
from xpipe.pagetypes import PAGE_TYPES
from xpipe.sim import policy as P
from xpipe.sim.area import dense_ids, group_ids
from xpipe.sim.runs import RunSpec
from xpipe.sim.tables import TIMELINE_OWN, TYPES_OWN, own_schema

log = logging.getLogger(__name__)


@dataclass
class DomainTrace:
    """What the replay needs of one domain; ``load(k)`` gives snapshot k's
    (hashes uint64, types uint8) in frame order."""

    id: str
    times: np.ndarray
    load: Callable[[int], tuple[np.ndarray, np.ndarray]]
    frames: int
    read_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    read_hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))


@dataclass
class Replay:
    timeline: pl.DataFrame  # xpipe.sim.tables.TIMELINE_OWN
    types: pl.DataFrame  # xpipe.sim.tables.TYPES_OWN


def _merged_reads(domains: Sequence[DomainTrace]):
    """All reads in replay order: (time, domain index, hash)."""
    t = np.concatenate([d.read_times for d in domains]) if domains else np.zeros(0)
    dom = np.concatenate([np.full(len(d.read_times), i, np.int32) for i, d in enumerate(domains)])
    h = np.concatenate([d.read_hashes for d in domains]).astype(np.uint64, copy=False)
    order = np.lexsort((dom, t))  # stable: trace order within a domain kept
    return t[order], dom[order], h[order]


def _feed_reads(policy: P.Policy, ids: np.ndarray, dom: np.ndarray, n_dom: int):
    """Feed reads to the policy; (reads, reads avoided) per domain."""
    avoided = policy.reads(ids)
    return np.bincount(dom, minlength=n_dom), np.bincount(dom[avoided], minlength=n_dom)


def kept_snapshots(times: np.ndarray, every: int) -> np.ndarray:
    """Indexes of the snapshots a run replays: every k-th from the first, and the last
    always, so every interval covers the same window and only the sampling changes.
    Applied to each domain's own snapshots; a skipped snapshot is never loaded."""
    keep = np.zeros(len(times), dtype=bool)
    keep[::every] = True
    keep[-1:] = True
    return np.flatnonzero(keep)


def replay(domains: Sequence[DomainTrace], spec: RunSpec, with_types: bool = True) -> Replay:
    """Replay ``domains`` (in mix order) under ``spec``; see the module docstring.

    ``with_types=False`` skips the shared-page-type accounting (its table is then empty).
    """
    n_dom = len(domains)
    kept = [kept_snapshots(d.times, spec.snapshot_every) for d in domains]
    times = np.unique(np.concatenate([d.times[k] for d, k in zip(domains, kept)]))
    r_time, r_dom, r_hash = _merged_reads(domains)
    if not len(times):  # I/O-only domains: one time, after every read, with no frames
        times = np.array([r_time.max() if len(r_time) else 0.0])
    universe, r_ids = dense_ids(np.append(r_hash, ZERO_HASH))  # = np.unique(..., return_inverse=True)
    r_ids = r_ids[:-1].astype(np.int64, copy=False)
    policy = spec.make_policy(P.ReplayContext(universe, len(r_ids) + len(times)))

    offsets = np.concatenate([[0], np.cumsum([d.frames for d in domains])]).astype(np.int64)
    n = int(offsets[-1])
    frame_dom = np.repeat(np.arange(n_dom, dtype=np.int32), [d.frames for d in domains])
    hashes = np.zeros(n, dtype=np.uint64)
    types = np.zeros(n, dtype=np.uint8)
    present = np.zeros(n, dtype=bool)
    loaded = [-1] * n_dom
    type_scope = np.zeros(len(PAGE_TYPES) * 2)
    rows = []
    read_at = 0
    prev_t = times[0]
    for k, t in enumerate(times):
        end = int(np.searchsorted(r_time, t, side="right"))
        dom_reads, dom_avoided = _feed_reads(policy, r_ids[read_at:end], r_dom[read_at:end], n_dom)
        read_at = end

        changed = np.zeros(n, dtype=bool)
        for i, d in enumerate(domains):
            j = int(np.searchsorted(d.times[kept[i]], t, side="right")) - 1
            snap = int(kept[i][j]) if j >= 0 else -1
            if snap < 0 or snap == loaded[i]:
                continue
            h, ty = d.load(snap)
            if len(h) != d.frames:
                raise ValueError(f"domain {d.id} snapshot {snap}: {len(h)} frames, expected {d.frames}")
            sl = slice(offsets[i], offsets[i + 1])
            if loaded[i] >= 0:
                changed[sl] = hashes[sl] != h
            hashes[sl], types[sl], present[sl] = h, ty, True
            loaded[i] = snap
        frames = P.Frames(float(t), float(t - prev_t), hashes, types, present, changed)
        shared = policy.step(frames)
        prev_t = t

        if k == len(times) - 1 and read_at < len(r_ids):
            tail_reads, tail_avoided = _feed_reads(policy, r_ids[read_at:], r_dom[read_at:], n_dom)
            dom_reads, dom_avoided = dom_reads + tail_reads, dom_avoided + tail_avoided

        mapped = shared.mapped
        idx = np.flatnonzero(mapped)
        inv, area_mapped = group_ids(hashes[idx])
        if with_types and len(idx):
            counts = np.bincount(inv, minlength=area_mapped)
            # a content is inter-domain when its frames' lowest and highest domain differ
            dom = frame_dom[idx]
            low = np.full(area_mapped, n_dom, dtype=dom.dtype)
            high = np.full(area_mapped, -1, dtype=dom.dtype)
            np.minimum.at(low, inv, dom)
            np.maximum.at(high, inv, dom)
            inter = (low != high)[inv].astype(np.int64)
            saved = (counts[inv] - 1) / counts[inv]
            type_scope += np.bincount(types[idx].astype(np.int64) * 2 + inter, weights=saved,
                                      minlength=len(type_scope))
        per_dom_present = np.bincount(frame_dom[present], minlength=n_dom)
        per_dom_mapped = np.bincount(frame_dom[idx], minlength=n_dom)
        per_dom_cow = np.bincount(frame_dom[shared.cow], minlength=n_dom)
        for i, d in enumerate(domains):
            if loaded[i] < 0 and dom_reads[i] == 0:
                continue
            rows.append((float(t), d.id,
                         int(per_dom_present[i] - per_dom_mapped[i]), int(per_dom_mapped[i]),
                         int(shared.used), area_mapped, int(shared.reserved),
                         int(dom_reads[i] - dom_avoided[i]), int(dom_avoided[i]), int(per_dom_cow[i])))
    timeline = pl.DataFrame(rows, schema=own_schema(TIMELINE_OWN), orient="row")
    type_scope /= len(times)
    types_df = pl.DataFrame(
        {
            "page_type": [t for t in PAGE_TYPES for _ in (0, 1)],
            "scope": ["intra", "inter"] * len(PAGE_TYPES),
            "pages_saved": type_scope,
        },
        schema=own_schema(TYPES_OWN),
    ).filter(pl.col("pages_saved") > 0)
    return Replay(timeline, types_df)
