"""The interface every sharing policy implements, and the registry they declare themselves in.

The replay (xpipe.sim.replay) calls, for every snapshot time in order:
``reads(ids)`` with the disk reads since the previous time, then
``step(frames)`` with every guest frame's content at that time. A policy
answers which frames are mapped from shared memory, how many pages shared
memory holds, and which frames took a copy-on-write break.

Writes are inferred from snapshots: a frame whose content differs from the
previous snapshot was written once, at the later snapshot.

A replay may hold one partition of the mix's contents only (xpipe.sim.partition):
then ``reads`` still gets every read of the mix, but ``step`` only the frames
whose content is the partition's, and a policy counts only the partition's
contents in the pages shared memory holds. What is not per content comes with
the frames, the same in every partition: the scan order and whether the mix
holds a zero page.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xpipe.pagetypes import PAGE_TYPES
from xpipe.sim.area import group_ids

#: No frame, as Shared's frame indexes.
NO_FRAMES = np.zeros(0, dtype=np.int64)
NO_FRAMES.flags.writeable = False

#: Page types a cooperating guest maps from the area: page-cache pages of disk blocks.
FILE_TYPES = np.array([PAGE_TYPES.index(t) for t in ("file_code", "file_data", "file")], dtype=np.uint8)


@dataclass
class Frames:
    """The frames a replay holds at one time: every frame of every domain of the mix
    (domains concatenated), or, in a partition's replay, every frame whose content is
    the partition's at some time replayed. Positions are the same at every step. The
    arrays are not to be modified, nor kept past the step: the replay overwrites them
    in place at the next step unless it keeps every step for the next run."""

    time_s: float
    dt_s: float  # time since the previous step (0 at the first)
    hashes: np.ndarray  # uint64 content hash (meaningful where present)
    types: np.ndarray  # uint8 index into PAGE_TYPES (meaningful where present)
    present: np.ndarray  # bool: the frame's domain has started and its content is the partition's now
    changed: np.ndarray  # bool: present before, and its content differs now (in this partition or not)
    #: () -> int64 per frame: its place in the scan order of every started frame of the mix; -1 where its
    #: domain has not started (computed when asked: only the scanner needs it; not to be modified)
    scan_order: Callable[[], np.ndarray]
    started: int  # frames of the mix's started domains, in every partition: the scan order's length
    zero_present: bool  # some started frame of the mix, in any partition, holds the zero page
    #: what is derived from this step's frames alone, by key: computed once (``derived``) and
    #: shared by every run that replays the same step (the replay keeps steps across runs)
    memo: dict = field(default_factory=dict, repr=False)

    def derived(self, key, compute: Callable[[], Any]) -> Any:
        """``compute()``, once per step and ``key`` (a policy's key starts with its name)."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]

    def shared_contents(self) -> tuple[np.ndarray, int]:
        """(the present frames whose content another present frame has, as indexes; number of such contents)."""
        def compute():
            mask, n = groups_of_two_or_more(self.hashes, self.present)
            return np.flatnonzero(mask), n
        return self.derived("shared", compute)


@dataclass
class Shared:
    # Frames as int64 indexes, increasing: most runs map few of the frames, so the
    # replay's per-run work follows the frames mapped rather than every frame.
    mapped: np.ndarray  # the frames mapped from shared memory
    used: int  # pages shared memory holds (of the partition's contents)
    reserved: int  # sharing area's reserved pages (dsa), else 0
    cow: np.ndarray  # the frames whose sharing a write broke at this step


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
    def __init__(self):
        self._prev_mapped: np.ndarray | None = None

    def reads(self, ids: np.ndarray) -> np.ndarray:
        """Disk reads (content ids) in order; True where the read was avoided."""
        return np.zeros(len(ids), dtype=bool)

    def share(self, f: Frames) -> tuple[np.ndarray, int, int]:
        """(frames mapped as increasing int64 indexes, pages held, pages reserved) at ``f.time_s``."""
        raise NotImplementedError

    def step(self, f: Frames) -> Shared:
        prev = self._prev_mapped
        cow = prev[f.changed[prev]] if prev is not None else NO_FRAMES
        mapped, used, reserved = self.share(f)
        self._prev_mapped = mapped
        return Shared(mapped, used, reserved, cow)


# --- The registry -------------------------------------------------------------

_KINDS = {int: r"\d+", float: r"\d+(?:\.\d+)?", str: None, bool: None}


def number(v) -> str:
    """A number as a run-id or label piece, exactly and without an exponent:
    16 -> '16', 0.25 -> '0.25', 1e6 -> '1000000'."""
    if isinstance(v, int) or float(v).is_integer():
        return str(int(v))
    return np.format_float_positional(float(v), trim="-")


@dataclass(frozen=True)
class Param:
    """One parameter of a policy: its sweep key (also its column in every run
    table), type, unit, default sweep values and its piece of the run id."""

    name: str  # unique across policies
    kind: type  # int, float, bool or str
    unit: str  # "" when it has none
    doc: str
    default: tuple
    #: the run-id piece: "{}" is the value; a bool's piece appears only when true
    token: str = "{}"
    choices: tuple = ()  # str: the accepted values, in display order
    minimum: float | None = None
    #: further check of one value: an error message, or None when it is fine
    check: Callable[[Any], str | None] | None = None

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise TypeError(f"param {self.name}: kind must be int, float, bool or str")
        if self.kind is str and not self.choices:
            raise TypeError(f"param {self.name}: a str param needs its choices")

    def validate(self, v) -> Any:
        """``v`` as this param's kind; ValueError naming the param and what it accepts."""
        what = f"{self.name}: {v!r}"
        if self.kind is bool:
            if not isinstance(v, bool):
                raise ValueError(f"{what} is not true or false")
            return v
        if self.kind is str:
            if v not in self.choices:
                raise ValueError(f"{what} is not one of {', '.join(self.choices)}")
            return v
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"{what} is not a finite number")
        if self.kind is int and v != int(v):
            raise ValueError(f"{what} is not a whole number")
        v = self.kind(v)
        if self.minimum is not None and v < self.minimum:
            raise ValueError(f"{what} is below the minimum {self.minimum:g}")
        if self.check and (msg := self.check(v)):
            raise ValueError(f"{what} {msg}")
        return v

    def piece(self, v) -> str:
        if self.kind is bool:
            return self.token if v else ""
        return self.token.format(number(v) if self.kind in (int, float) else v)

    def pattern(self) -> str:
        if self.kind is bool:
            return f"(?:-(?P<{self.name}>{re.escape(self.token)}))?"
        value = "|".join(map(re.escape, self.choices)) if self.kind is str else _KINDS[self.kind]
        before, after = (re.escape(x) for x in self.token.split("{}"))
        return f"-{before}(?P<{self.name}>{value}){after}"

    def parse(self, text: str | None):
        if self.kind is bool:
            return text is not None
        return self.kind(text) if self.kind is not str else text

    def json_schema(self) -> dict:
        item: dict = {"type": {int: "integer", float: "number", bool: "boolean", str: "string"}[self.kind]}
        if self.choices:
            item["enum"] = list(self.choices)
        if self.minimum is not None:
            item["minimum"] = self.minimum
        unit = f", {self.unit}" if self.unit else ""
        return {"type": "array", "items": item, "minItems": 1, "uniqueItems": True, "default": list(self.default),
                "description": f"{self.doc}{unit}"}


@dataclass
class ReplayContext:
    """What a policy may need of the whole replay when it is made."""

    universe: np.ndarray  # sorted unique hashes of every disk read (and the zero page): id = position
    max_accesses: int  # bound on area lookups over the replay
    own: np.ndarray  # bool per id: the content is in the replay's partition (every id when not partitioned)


@dataclass(frozen=True)
class PolicyInfo:
    """A policy's declaration: everything the workflow, tables and figures know of it."""

    name: str  # run ids start with it; [a-z]+
    doc: str  # one line, for `xpipe policies` and the README
    factory: Callable[[dict, ReplayContext], Policy]  # (params by name, context) -> a fresh policy
    label: Callable[[dict], str]  # (params by name) -> the run's name in figures and tables
    colour: str  # one colour per policy in every figure (runs of one policy in its shades)
    order: int  # position in legends, tables and panels
    params: tuple[Param, ...] = ()
    #: run in every sweep: the references every summary is measured against
    always: bool = False
    #: has a sharing area whose every lookup is a disk read (its hit ratio is its I/O reduction)
    has_area: bool = False
    run_pattern: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not re.fullmatch(r"[a-z]+", self.name):
            raise ValueError(f"policy name {self.name!r}: expected lower-case letters only")
        pattern = re.compile(re.escape(self.name) + "".join(p.pattern() for p in self.params))
        object.__setattr__(self, "run_pattern", pattern)


#: Every policy by name, in display order once ``xpipe.sim.policies`` is imported.
REGISTRY: dict[str, PolicyInfo] = {}


def register(info: PolicyInfo) -> PolicyInfo:
    if info.name in REGISTRY:
        raise ValueError(f"policy {info.name!r} registered twice")
    taken = {p.name: q.name for q in REGISTRY.values() for p in q.params}
    for p in info.params:
        if p.name in taken:  # (xpipe.sim.tables checks them against the tables' other columns)
            raise ValueError(f"policy {info.name}: parameter name {p.name!r} is taken by policy {taken[p.name]}")
    REGISTRY[info.name] = info
    ordered = sorted(REGISTRY.values(), key=lambda i: (i.order, i.name))
    REGISTRY.clear()
    REGISTRY.update((i.name, i) for i in ordered)
    return info

