"""`xpipe hash`: one guest memory dump (QMP pmemsave or dump-guest-memory ELF
core) into a PAGES table, one row per page frame.

The pages are hashed straight from the file by one thread per core
(xpipe.hashing.hash_file, in C with the GIL released), typed by
xpipe.pagetypes and written by xpipe.flatparquet. Nothing here imports polars
or pyarrow, whose start-up alone would cost about as long as hashing a 4 GiB
dump: see docs/benchmarks.md for the figures.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xpipe.errors import InputError
from xpipe.flatparquet import categorical, constant, plain, write_table
from xpipe.hashing import ZERO_HASH
from xpipe.io import atomic_path
from xpipe.pagetypes import PAGE_TYPES, type_codes
from xpipe.readers.compact import align_kpageflags, check_kpageflags, read_u64
from xpipe.readers.memdump import dump_runs, frames_of, read_dump

#: The ARROW:schema polars writes for xpipe.schemas.PAGES (PAGES.arrow_schema()),
#: so that polars reads page_type back as its Enum (its categories are in the
#: field metadata polars defines). tests/test_dumphash.py checks it is current
#: for the installed polars; after changing PAGES, paste the new value of
#: ``python -c 'from xpipe.schemas import PAGES; print(PAGES.arrow_schema())'``.
PAGES_ARROW_SCHEMA = (
    "/////z8CAAAEAAAA8v///xQAAAAEAAEAAAAKAAsACAAKAAQA+P///wwAAAAIAAgAAAAEAAYAAADUAQAAlAEAAGABAAAwAQAA"
    "+AAAAAQAAADm////3AAAANQAAAC0AAAArAAAABgAAAABFBIAGgAEABgAGQAIAAwAEAAUAAEAAAAEAAAA9P///2wAAAAMAAAA"
    "CAAMAAQACABVAAAANDt6ZXJvNDtmcmVlNjtrZXJuZWw5O2ZpbGVfY29kZTk7ZmlsZV9kYXRhNDtmaWxlNDtzbGFiOTtwYWdl"
    "dGFibGU5O2Fub255bW91czc7dW5rbm93bgAAABAAAABfUExfRU5VTV9WQUxVRVMyAAAAAAAAAAD2////EAAAAAEACgAJAAAA"
    "BAAIAML///8IAAAA9P7//wkAAABwYWdlX3R5cGUAAAAg////JAAAABAAAAAIAAAAAQIAAAAAAAD2////QAAAAAAABgAIAAQA"
    "BAAAAGhhc2gAAAAAVP///yAAAAAQAAAACAAAAAECAAAAAAAAmP///0AAAAABAAAAAwAAAGdmbgCA////IAAAABAAAAAIAAAA"
    "AQMAAAAAAAD6////AgAGAAYABAAGAAAAdGltZV9zAACw////KAAAABAAAAAIAAAAAQIAAAAAAAD0////IAAAAAEAAAAIAAkA"
    "BAAIAAgAAABzbmFwc2hvdAAAAADs////LAAAACAAAAAYAAAAARQAABAAEgAEABAAEQAIAAAADAAAAAAA/P///wQABAAGAAAA"
    "ZG9tYWluAA=="
)


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one file (also through links); False when either is missing."""
    try:
        return a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()


def hash_dump(dump: str | Path, output: str | Path, kind: str = "auto",
              kpageflags: str | Path | None = None, threads: int = 0) -> int:
    """Write the PAGES table of ``dump`` to ``output`` (Parquet); returns its row count.

    domain is the dump's file stem, snapshot 0 at time 0. Page types come from
    ``kpageflags`` (the guest's /proc/kpageflags, one u64 per frame number up to
    the dump's last frame) when given, else only zero pages are told apart.
    ``threads``: hashing threads, 0 for one per core. An output that is one of
    the inputs is refused before anything is read or written.
    """
    dump, output = Path(dump), Path(output)
    kpageflags = Path(kpageflags) if kpageflags is not None else None
    for name, given in (("dump", dump), ("kpageflags", kpageflags)):
        if given is not None and _same_file(output, given):
            raise InputError(output, None, f"expected an output file other than the {name} it is made from")
    if kpageflags is not None and _same_file(kpageflags, dump):
        raise InputError(kpageflags, None, "expected the guest's kpageflags, not the dump itself")
    kpf = None
    if kpageflags is not None:  # bad flags fail before the long part
        kpf = read_u64(kpageflags)
        check_kpageflags(kpageflags, kpf, frames_of(dump_runs(dump, kind)))
    gfn, hashes = read_dump(dump, kind, threads)
    flags, known = None, None
    if kpf is not None:
        check_kpageflags(kpageflags, kpf, gfn)  # the frames hashed are those checked above
        flags, known = align_kpageflags(gfn, kpf)
    columns = [
        constant("domain", dump.stem),
        constant("snapshot", np.int32(0)),
        constant("time_s", np.float64(0.0)),
        plain("gfn", gfn),
        plain("hash", hashes),
        categorical("page_type", PAGE_TYPES, type_codes(hashes == ZERO_HASH, flags, known)),
    ]
    with atomic_path(output) as tmp:
        write_table(tmp, len(gfn), columns, {"ARROW:schema": PAGES_ARROW_SCHEMA})
    return len(gfn)
