"""Progress of a capture: one line per snapshot on the capture's log (stderr), with how
many snapshots are done and an estimate of the time left."""

from __future__ import annotations

import logging
import time

log = logging.getLogger(__name__)

#: Seconds a batch takes beyond its last snapshot time (writing files, stopping QEMU) until
#: one has been measured.
FIRST_OVERHEAD_S = 15.0


def _left(seconds: float) -> str:
    return f"~{seconds:.0f} s left" if seconds < 90 else f"~{seconds / 60:.0f} min left"


class Progress:
    """Counts the snapshots of a capture of ``batches`` (the domain ids of each), each guest
    snapshot at ``times_s`` (seconds since its QEMU's start).

    A batch takes about its last snapshot time plus an overhead (files, stopping QEMU),
    measured on the batches run so far; the time left is what the running batch still needs
    plus that for each batch after it."""

    def __init__(self, name: str, batches: list[list[str]], times_s: list[float]) -> None:
        self.name = name
        self.times_s = times_s
        self.total = sum(len(b) for b in batches) * len(times_s)
        self.to_run = len(batches)  # batches not yet finished, the running one included
        self.done = 0
        self.batch_start: float | None = None
        self.overheads: list[float] = []

    def kept(self, batch: list[str]) -> None:
        """A batch recorded earlier and kept: its snapshots count as done."""
        self.done += len(batch) * len(self.times_s)
        self.to_run -= 1

    def batch_started(self) -> None:
        self.batch_start = time.monotonic()

    def batch_finished(self) -> None:
        if self.batch_start is not None:
            self.overheads.append(time.monotonic() - self.batch_start - self.times_s[-1])
        self.batch_start = None
        self.to_run -= 1

    def left_s(self) -> float:
        """Estimated seconds until the last batch is written."""
        overhead = max(sum(self.overheads) / len(self.overheads), 0.0) if self.overheads else FIRST_OVERHEAD_S
        per_batch = self.times_s[-1] + overhead
        running = 0.0
        waiting = self.to_run
        if self.batch_start is not None:
            running = max(per_batch - (time.monotonic() - self.batch_start), 0.0)
            waiting -= 1
        return running + max(waiting, 0) * per_batch

    def snapshot(self, guest: str, index: int, time_s: float) -> None:
        """Snapshot ``index`` (from 0) of ``guest``, scheduled at ``time_s``, is written."""
        self.done += 1
        log.info("capture %s: guest %s snapshot %d/%d (t=%.0f s), %d of %d snapshots done, %s",
                 self.name, guest, index + 1, len(self.times_s), time_s, self.done, self.total,
                 _left(self.left_s()))
