"""Guest disk reads as QEMU's log trace backend prints `blk_co_preadv` events.

With ``-msg timestamp=on`` each line reads
``PID@SEC.USEC:blk_co_preadv blk 0x.. bs 0x.. offset N bytes N flags 0x..``.

Which lines are read, skipped or refused:

- ``blk_co_preadv`` lines are read; one that does not parse is an error.
- Lines of *other QEMU trace events* are skipped: an event name of lower-case
  words joined by ``_`` (every QEMU trace event's name: ``bdrv_open_common``,
  ``blk_co_pwritev``, ...), after the optional ``PID@SEC.USEC:`` prefix, then
  its arguments. So are blank lines.
- Any other line is an error naming it: the file is not a QEMU trace (an FIU
  or blkparse trace, text, binary data).
- A file with no ``blk_co_preadv`` line is an error unless it is empty (no
  bytes at all, after gunzip): an empty trace is a guest that read nothing;
  a trace of other events only was recorded without ``-trace blk_co_preadv``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from xpipe.errors import InputError, bad_record
from xpipe.readers.compact import read_bytes

_EVENT_NAME = "blk_co_preadv"
_LINE = re.compile(
    r"^(?:\d+@(?P<sec>\d{1,20})\.(?P<usec>\d{6}):)?blk_co_preadv blk 0x[0-9a-f]+ bs 0x[0-9a-f]+ "
    r"offset (?P<offset>\d{1,20}) bytes (?P<bytes>\d{1,20}) flags 0x[0-9a-f]+\s*$",
    re.ASCII,
)
#: A line of any QEMU trace event (log backend), with or without the timestamp prefix.
_EVENT = re.compile(r"(?:\d+@\d+\.\d+:)?[a-z0-9]+(?:_[a-z0-9]+)+(?:[ \t].*)?", re.ASCII)
_EXPECTED = "expected 'PID@SEC.USEC:blk_co_preadv blk 0x.. bs 0x.. offset N bytes N flags 0x..'"
_MAX_BYTES = 2**63 - 1
#: A read may carry a timestamp this much before ``start_epoch_s`` (its rounding to 1 µs).
_START_SLACK_S = 2e-6


def read_blk_trace(
    path: str | Path, start_epoch_s: float | None, disk_bytes: int | None = None,
    skipped: dict[str, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(time_s, offset, bytes) of every read request, time relative to ``start_epoch_s``.

    Without ``start_epoch_s`` the lines may lack timestamps and times are NaN.
    Reads past ``disk_bytes`` are an error: they would read content we do not have.
    A read before ``start_epoch_s`` (the guest's time 0, when QEMU started) is an
    error too: the trace and the start time are not of the same run. With ``skipped``
    (lenient reading) a bad line is counted there by kind and left out instead.
    """
    path = Path(path)
    if start_epoch_s is not None and not math.isfinite(start_epoch_s):
        raise InputError(path, None, f"expected a finite start time for the trace, got {start_epoch_s!r}")
    times, offsets, sizes = [], [], []
    data = read_bytes(path)
    if not data:
        return np.zeros(0, np.float64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    preadv_lines = 0
    text = data.decode("utf-8", errors="replace")
    for lineno, line in enumerate(text.split("\n"), 1):
        m = _LINE.match(line)
        if m is None:
            if not line.strip():
                continue
            if _EVENT_NAME not in line and _EVENT.fullmatch(line.rstrip()):
                continue  # a line of another QEMU trace event
            expected = _EXPECTED if _EVENT_NAME in line else (
                "expected a QEMU log-backend trace line ('PID@SEC.USEC:EVENT ARGS', EVENT such as "
                "blk_co_preadv)")
            bad_record(skipped, "malformed line", path, f"line {lineno}", f"{expected}; got {line.strip()[:120]!r}")
            continue
        preadv_lines += 1
        off, n = int(m["offset"]), int(m["bytes"])
        if n == 0:
            continue
        if off + n > _MAX_BYTES:
            bad_record(skipped, "read past 2**63", path, f"line {lineno}",
                       f"expected a read below byte 2**63; got offset {off} bytes {n}")
            continue
        if disk_bytes is not None and off + n > disk_bytes:
            bad_record(skipped, "read outside the disk", path, f"line {lineno}",
                       f"expected a read inside the {disk_bytes}-byte disk image; got offset {off} bytes {n}")
            continue
        if m["sec"] is not None and start_epoch_s is not None:
            t = int(m["sec"]) + int(m["usec"]) / 1e6 - start_epoch_s
            if t < -_START_SLACK_S:
                bad_record(skipped, "read before the guest started", path, f"line {lineno}",
                           f"expected a read after the guest started (at {start_epoch_s:.6f}, "
                           f"reads_start_epoch_s); got one {-t:.6f} s before: is the start time this trace's?")
                continue
            times.append(t)
        elif start_epoch_s is not None:
            bad_record(skipped, "no timestamp", path, f"line {lineno}",
                       "expected a 'PID@SEC.USEC:' timestamp (run QEMU with -msg timestamp=on)")
            continue
        else:
            times.append(np.nan)
        offsets.append(off)
        sizes.append(n)
    if not preadv_lines:
        raise InputError(
            path, None,
            f"expected QEMU '{_EVENT_NAME}' trace lines (or an empty file for a guest that read "
            "nothing); found none (was QEMU run with -trace blk_co_preadv?)",
        )
    return (
        np.asarray(times, dtype=np.float64),
        np.asarray(offsets, dtype=np.int64),
        np.asarray(sizes, dtype=np.int64),
    )


def blk_requests(path: Path, start_epoch_s: float | None, select: dict[str, str], disk_bytes: int | None,
                 skipped: dict[str, int] | None = None):
    """The read-trace interface (xpipe.readers.registry): (time_s, offset, bytes, None),
    None because the content comes from the domain's disk image."""
    t, off, n = read_blk_trace(path, start_epoch_s, disk_bytes, skipped=skipped)
    if np.isnan(t).any():
        raise InputError(path, None,
                         "expected timestamped reads and 'reads_start_epoch_s' in the manifest's domain entry")
    return t, off, n, None
