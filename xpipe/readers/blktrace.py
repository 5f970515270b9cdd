"""Guest disk reads as QEMU's log trace backend prints `blk_co_preadv` events.

With ``-msg timestamp=on`` each line reads
``PID@SEC.USEC:blk_co_preadv blk 0x.. bs 0x.. offset N bytes N flags 0x..``;
other events in the same log are skipped.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from xpipe.errors import InputError
from xpipe.readers.compact import read_bytes

_LINE = re.compile(
    r"^(?:\d+@(?P<sec>\d+)\.(?P<usec>\d{6}):)?blk_co_preadv blk 0x[0-9a-f]+ bs 0x[0-9a-f]+ "
    r"offset (?P<offset>\d+) bytes (?P<bytes>\d+) flags 0x[0-9a-f]+\s*$"
)
_EXPECTED = "expected 'PID@SEC.USEC:blk_co_preadv blk 0x.. bs 0x.. offset N bytes N flags 0x..'"


def read_blk_trace(
    path: str | Path, start_epoch_s: float | None, disk_bytes: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(time_s, offset, bytes) of every read request, time relative to ``start_epoch_s``.

    Without ``start_epoch_s`` the lines may lack timestamps and times are NaN.
    Reads past ``disk_bytes`` are an error: they would read content we do not have.
    """
    path = Path(path)
    times, offsets, sizes = [], [], []
    text = io.StringIO(read_bytes(path).decode("utf-8", errors="replace"))
    for lineno, line in enumerate(text, 1):
        if "blk_co_preadv" not in line:
            continue
        m = _LINE.match(line)
        if not m:
            raise InputError(path, f"line {lineno}", f"{_EXPECTED}; got {line.strip()[:120]!r}")
        off, n = int(m["offset"]), int(m["bytes"])
        if n == 0:
            continue
        if disk_bytes is not None and off + n > disk_bytes:
            raise InputError(
                path, f"line {lineno}",
                f"expected a read inside the {disk_bytes}-byte disk image; got offset {off} bytes {n}",
            )
        if m["sec"] is not None and start_epoch_s is not None:
            times.append(int(m["sec"]) + int(m["usec"]) / 1e6 - start_epoch_s)
        elif start_epoch_s is not None:
            raise InputError(
                path, f"line {lineno}",
                "expected a 'PID@SEC.USEC:' timestamp (run QEMU with -msg timestamp=on)",
            )
        else:
            times.append(np.nan)
        offsets.append(off)
        sizes.append(n)
    return (
        np.asarray(times, dtype=np.float64),
        np.asarray(offsets, dtype=np.int64),
        np.asarray(sizes, dtype=np.int64),
    )
