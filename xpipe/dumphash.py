"""`xpipe hash`: one guest memory dump (QMP pmemsave or dump-guest-memory ELF
core) into a PAGES table, one row per page frame.

The pages are hashed straight from the file by one thread per core
(xpipe.hashing.hash_file, in C with the GIL released); meanwhile this thread
imports polars, the slowest import, so that start-up overlaps the hashing.
See docs/benchmarks.md for the figures.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from xpipe.readers.memdump import read_dump


def hash_dump(dump: str | Path, output: str | Path, kind: str = "auto",
              kpageflags: str | Path | None = None, threads: int = 0) -> int:
    """Write the PAGES table of ``dump`` to ``output`` (Parquet); returns its row count.

    domain is the dump's file stem, snapshot 0 at time 0. Page types come from
    ``kpageflags`` (the guest's /proc/kpageflags, one u64 per frame) when given,
    else only zero pages are told apart. ``threads``: hashing threads, 0 for one per core.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="import") as imports:
        table_of = imports.submit(_table_builder)
        gfn, hashes = read_dump(dump, kind, threads)
        table = table_of.result()(Path(dump).stem, gfn, hashes, kpageflags)
    from xpipe.io import write_parquet

    write_parquet(table, output)
    return table.height


def _table_builder():
    """The function that makes the PAGES frame (importing polars is the slow part)."""
    import polars as pl

    from xpipe.extract import page_types
    from xpipe.normalise import frame_table

    def table(domain: str, gfn: np.ndarray, hashes: np.ndarray, kpageflags) -> pl.DataFrame:
        frames = frame_table(domain, 0, 0.0, gfn, hashes, Path(kpageflags) if kpageflags else None)
        return page_types(frames.lazy(), None).collect()

    return table
