"""A mix's replay split by content: partitions, their shares of the results, and the sum of the shares.

Sharing is per content: a frame shares only with frames holding the same content.
A partition holds the contents whose hash is ``index`` modulo ``count``, and a
partition's replay (xpipe.sim.replay) loads only the frames holding those
contents and counts only what concerns them: its frames (private, mapped, COW
breaks), its shared pages, its disk reads. Every count of the run tables is a
sum over contents, so the partitions' counts add up to the whole mix's exactly;
the few facts that are not per content (times, the dsa area's contents over
time, the scanner's order) every partition takes from the same first pass
(xpipe.sim.schedule). Peaks and means are taken after the shares are added up.

A partition's share of a run is three tables (``PARTS``), which a partitioned
workflow writes per partition and merges: the timeline's counts, the shared
frames by page type, scope and group size (integers, so that the mean pages
saved is computed once, from the sum, and is the same however the mix was split),
and each prefix's footprint per time (domains per host).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from xpipe.pagetypes import PAGE_TYPES
from xpipe.schemas import PAGE_TYPE, Column, Table
from xpipe.sim.metrics import per_time
from xpipe.sim.tables import TIMELINE_OWN, TYPES_OWN, own_schema


@dataclass(frozen=True)
class Partition:
    """The contents whose hash is ``index`` modulo ``count``; ``Partition()`` is every content."""

    index: int = 0
    count: int = 1

    def __post_init__(self):
        for v in (self.index, self.count):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"partition {self.index!r} of {self.count!r}: expected whole numbers")
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"partition {self.index} of {self.count}: expected 0 <= index < count, count >= 1")

    @property
    def whole(self) -> bool:
        return self.count == 1

    def holds(self, hashes: np.ndarray) -> np.ndarray:
        """Bool per hash: the content is in this partition."""
        if self.whole:
            return np.ones(len(hashes), dtype=bool)
        return np.asarray(hashes, dtype=np.uint64) % np.uint64(self.count) == np.uint64(self.index)

    def expr(self, column: str = "hash") -> pl.Expr:
        """``holds`` as a polars filter, for reading only the partition's rows."""
        return pl.lit(True) if self.whole else pl.col(column) % self.count == self.index


WHOLE = Partition()

_S, _I = pl.String(), pl.Int64()
_RUN = Column("run", _S, "run id")
_WHERE = "results/{experiment}/replay/{mix}/partitions/{part}-of-{partitions}/"
_DOC = "A partition's share of every run of the mix (intermediate: merged into the run tables)."

#: The timeline's columns that add up over partitions; area_reserved is the run's (the same in each).
ADDITIVE = tuple(c.name for c in TIMELINE_OWN if c.name not in ("time_s", "domain", "area_reserved"))
#: The frames mapped from shared memory, by page type, scope and the size of their content's group.
TYPE_COUNTS_OWN = (
    Column("page_type", _S, "page type of the mapped frames"),
    Column("scope", _S, "intra: every frame of the content is in one domain; inter: several"),
    Column("group_size", _I, "frames mapped to the content (each saves (group_size - 1) / group_size pages)"),
    Column("frames", _I, "such frames, summed over the times replayed"),
    Column("times", _I, "snapshot times replayed"),
)
PREFIX_FOOTPRINTS_OWN = (
    Column("domains", _I, "k: the mix's first k domains, in mix order"),
    Column("time_s", pl.Float64(), "guest time, seconds"),
    Column("footprint", _I, "the partition's share of those k domains' footprint at that time, pages"),
)
PARTS = (
    Table("timeline", _WHERE + "timeline.parquet", _DOC, (_RUN, *TIMELINE_OWN)),
    Table("types", _WHERE + "types.parquet", _DOC, (_RUN, *TYPE_COUNTS_OWN)),
    Table("prefixes", _WHERE + "prefixes.parquet", _DOC, (_RUN, *PREFIX_FOOTPRINTS_OWN)),
)
SCOPES = ("intra", "inter")

# A partitioned replay's inputs: each domain's pages split once by partition (rule
# split_pages), so that a partition's job reads its share only, not every page.
_SPLIT = "results/pages/{capture}/partitions-{partitions}/{domain}/"
SNAPSHOTS = Table("snapshots", _SPLIT + "snapshots.parquet", "A domain's snapshots (intermediate).", (
    Column("domain", _S, "domain id"),
    Column("snapshot", pl.Int32(), "snapshot index, 0-based, in time order"),
    Column("time_s", pl.Float64(), "guest time of the snapshot, seconds since boot"),
    Column("frames", pl.UInt32(), "the snapshot's frames"),
    Column("zero", pl.Boolean(), "some frame of the snapshot, in any partition, holds the zero page"),
))
PAGE_SHARES = Table("page_shares", _SPLIT + "{part}.parquet",
                    "A domain's frames whose content is the partition's (intermediate).", (
    Column("snapshot", pl.Int32(), "snapshot index"),
    Column("frame", _I, "the frame's place among the snapshot's frames, in frame-number order"),
    Column("hash", pl.UInt64(), "content hash"),
    Column("page_type", PAGE_TYPE, "page type"),
))


def merge_timelines(parts: Sequence[pl.DataFrame], key: Sequence[str] = ("time_s", "domain")) -> pl.DataFrame:
    """The partitions' timelines (each the same rows, in the same order) as the mix's."""
    first = parts[0].select(key)
    for p in parts[1:]:
        if not p.select(key).equals(first):
            raise ValueError("the partitions' timelines have different rows: not replays of one mix and run")
    merged = pl.concat(parts).group_by(key, maintain_order=True).agg(
        *(pl.col(c).sum() for c in ADDITIVE), pl.col("area_reserved").first())
    return merged.select(parts[0].columns)


def types_table(counts: pl.DataFrame) -> pl.DataFrame:
    """The types table's own columns (TYPES_OWN) from every partition's type counts of one run.

    Each frame of a content mapped by c frames saves (c - 1) / c pages; the mean over
    times of their sum, added in a fixed order from exact integers.
    """
    summed = (counts.group_by("page_type", "scope", "group_size")
              .agg(pl.col("frames").sum(), pl.col("times").first())
              .sort("page_type", "scope", "group_size"))
    cells = {(t, s): (c["group_size"].to_numpy(), c["frames"].to_numpy(), int(c["times"][0]))
             for (t, s), c in summed.partition_by("page_type", "scope", as_dict=True).items()}
    rows = []
    for t in PAGE_TYPES:
        for s in SCOPES:
            if (t, s) in cells:
                size, frames, times = cells[(t, s)]
                rows.append((t, s, float(np.sum(frames * (size - 1) / size)) / times))
    return pl.DataFrame(rows, schema=own_schema(TYPES_OWN), orient="row").filter(pl.col("pages_saved") > 0)


def footprints(timeline: pl.DataFrame, domains: int) -> pl.DataFrame:
    """PREFIX_FOOTPRINTS_OWN of one prefix (its first ``domains`` domains) from its timeline or share of it."""
    return per_time(timeline).select(pl.lit(domains, _I).alias("domains"), "time_s", "footprint")


def merged_prefix_peaks(footprints: pl.DataFrame, domains: int) -> list[tuple[int, int]]:
    """(k, peak footprint of the first k domains) for k = 1..``domains``, from every
    partition's prefix footprints (PREFIX_FOOTPRINTS_OWN) of one run; 0 for a prefix
    with no times."""
    peaks = (footprints.group_by("domains", "time_s").agg(pl.col("footprint").sum())
             .group_by("domains").agg(pl.col("footprint").max()))
    found = dict(zip(peaks["domains"].to_list(), peaks["footprint"].to_list()))
    return [(k, int(found.get(k) or 0)) for k in range(1, domains + 1)]
