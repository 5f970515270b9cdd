"""Which reader reads each kind of snapshot file a manifest names: the kinds a manifest
accepts are the keys of SNAPSHOT_READERS and DELTA_READERS, so a new format is its
reader and one entry here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from xpipe.readers.blktrace import blk_requests
from xpipe.readers.compact import read_page_hashes
from xpipe.readers.delta import read_delta_snapshot
from xpipe.readers.fiu import fiu_requests
from xpipe.readers.kdump import read_kdump
from xpipe.readers.memdump import read_elf_core, read_pmemsave
from xpipe.readers.umass import read_umass
from xpipe.readers.xen import read_xen_core

#: (file, threads; 0 for one per core) -> (gfn, hash), frames in order.
SnapshotReader = Callable[[Path, int], tuple[np.ndarray, np.ndarray]]

#: Manifest snapshot kind -> its reader.
SNAPSHOT_READERS: dict[str, SnapshotReader] = {
    "pages": read_page_hashes,
    "pmemsave": read_pmemsave,
    "elf": read_elf_core,
    "kdump": read_kdump,
    "xen": read_xen_core,
    "umass": read_umass,
}

#: (file, the domain's previous snapshot as (gfn, hash), None for its first) -> (gfn, hash).
DeltaReader = Callable[[Path, tuple[np.ndarray, np.ndarray] | None], tuple[np.ndarray, np.ndarray]]

#: Manifest snapshot kind -> its reader, for the kinds whose file holds only what changed
#: since the domain's previous snapshot (which a domain's first snapshot cannot be).
DELTA_READERS: dict[str, DeltaReader] = {
    "delta": read_delta_snapshot,
}

#: Every snapshot kind a manifest accepts.
SNAPSHOT_KINDS = (*SNAPSHOT_READERS, *DELTA_READERS)


def read_snapshot(kind: str, path: Path, threads: int,
                  previous: tuple[np.ndarray, np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    """(gfn, hash) of a snapshot of kind ``kind``; ``previous`` is the domain's snapshot before
    it, as this returned it (None for the first), which only a delta kind reads."""
    if kind in DELTA_READERS:
        return DELTA_READERS[kind](path, previous)
    return SNAPSHOT_READERS[kind](path, threads)

#: (trace file, wall-clock time of guest time 0 or None, the domain's selection of a shared
#: trace (device, process), disk size in bytes or None, a dict to count skipped bad records
#: in by kind, or None to stop at the first) -> (time_s, offset, bytes, content hash or
#: None), one element per read request in trace order; None when the content comes from
#: the disk image.
ReadTraceReader = Callable[[Path, float | None, dict[str, str], int | None, dict[str, int] | None],
                           tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]]

#: Manifest reads format -> its reader: a plain path is a qemu-blk trace; `reads: {fiu: PATH, ...}`.
READ_TRACE_READERS: dict[str, ReadTraceReader] = {
    "qemu-blk": blk_requests,
    "fiu": fiu_requests,
}
