"""Stage 2: page types from kpageflags and disk content; read hashes per 4 KiB block."""

import numpy as np
import polars as pl

from xpipe.extract import page_types, read_hashes
from xpipe.hashing import ZERO_HASH
from xpipe.pagetypes import KPF, PAGE_TYPES, type_codes
from xpipe.schemas import FRAMES, REQUESTS


def bit(*names):
    v = 0
    for n in names:
        v |= 1 << KPF[n]
    return v


def test_page_types_by_flags_and_disk_content():
    disk = pl.DataFrame({"block": [0, 1], "hash": [101, 102]}, schema={"block": pl.Int64, "hash": pl.UInt64})
    rows = [  # (hash, kpageflags, expected type)
        (ZERO_HASH, bit("BUDDY"), "free"),
        (ZERO_HASH, bit("ANON"), "zero"),
        (7, bit("RESERVED"), "kernel"),
        (101, bit("MMAP") | (1 << 5), "file_code"),
        (102, 1 << 5, "file_data"),
        (101, None, "file"),
        (101, bit("ANON"), "anonymous"),  # a private copy of file content is not page cache
        (8, bit("SLAB"), "slab"),
        (9, bit("PGTABLE"), "pagetable"),
        (10, bit("ANON"), "anonymous"),
        (11, 0, "unknown"),
        (12, None, "unknown"),
    ]
    frames = FRAMES.conform(pl.DataFrame({
        "domain": "a", "snapshot": 0, "time_s": 1.0, "gfn": list(range(len(rows))),
        "hash": [int(r[0]) for r in rows], "kpageflags": [r[1] for r in rows],
    }, schema_overrides={"hash": pl.UInt64, "kpageflags": pl.UInt64}))
    got = page_types(frames.lazy(), disk.lazy()).collect()
    assert got["page_type"].cast(pl.String).to_list() == [r[2] for r in rows]


def test_page_types_without_a_disk():
    frames = FRAMES.conform(pl.DataFrame({
        "domain": "a", "snapshot": 0, "time_s": 1.0, "gfn": [0, 1],
        "hash": [ZERO_HASH, 5], "kpageflags": [None, None],
    }, schema_overrides={"hash": pl.UInt64, "kpageflags": pl.UInt64}))
    got = page_types(frames.lazy(), None).collect()
    assert got["page_type"].cast(pl.String).to_list() == ["zero", "unknown"]


def test_read_hashes_split_requests_into_blocks():
    blocks = pl.DataFrame({"block": [0, 1, 2, 3], "hash": [10, 11, 12, 13]},
                          schema={"block": pl.Int64, "hash": pl.UInt64})
    requests = REQUESTS.conform(pl.DataFrame({
        "domain": "a", "seq": [0, 1, 2], "time_s": [1.0, 2.0, 3.0],
        "offset": [512, 4096, 12288], "bytes": [512, 8193, 4096], "hash": None,
    }))
    got = read_hashes(requests.lazy(), blocks.lazy()).collect()
    # 512 B inside block 0; 8193 B from 4096 touch blocks 1, 2 and 3; then block 3
    assert got["block"].to_list() == [0, 1, 2, 3, 3]
    assert got["hash"].to_list() == [10, 11, 12, 13, 13]
    assert got["seq"].to_list() == [0, 1, 2, 3, 4]
    assert got["time_s"].to_list() == [1.0, 2.0, 2.0, 2.0, 3.0]


def test_reads_of_a_trace_that_carries_its_contents():
    # an FIU trace: one 4 KiB page a request, its digest in the trace, no disk image
    requests = REQUESTS.conform(pl.DataFrame({
        "domain": "a", "seq": [0, 1], "time_s": [1.0, 2.0], "offset": [8192, 4096], "bytes": [4096, 4096],
        "hash": [7, 9]}, schema_overrides={"hash": pl.UInt64}))
    got = read_hashes(requests.lazy(), None).collect()
    assert got.select("seq", "block", "hash").rows() == [(0, 2, 7), (1, 1, 9)]


def test_numpy_and_polars_apply_the_same_rules():
    """`xpipe hash` types pages with numpy (pagetypes.type_codes), stage 2 with polars: same rules, same types."""
    rng = np.random.default_rng(7)
    n = 5000
    bits = np.array([1 << b for b in KPF.values()] + [1 << 5, 1 << 60], dtype=np.uint64)  # and bits no rule reads
    flags = np.bitwise_or.reduce(bits * (rng.random((n, len(bits))) < 0.2), axis=1).astype(np.uint64)
    known = rng.random(n) < 0.7
    zero = rng.random(n) < 0.2
    hashes = np.where(zero, ZERO_HASH, rng.integers(1, 2**63, n).astype(np.uint64))
    on_disk_content = hashes[rng.random(n) < 0.3]  # a zero block among them too
    disk = pl.DataFrame({"block": np.arange(len(on_disk_content)), "hash": on_disk_content})
    on_disk = np.isin(hashes, on_disk_content)
    frames = FRAMES.conform(pl.DataFrame({
        "domain": "a", "snapshot": 0, "time_s": 0.0, "gfn": np.arange(n), "hash": hashes,
        "kpageflags": pl.Series(flags, dtype=pl.UInt64).set(pl.Series(~known), None),
    }))
    by_polars = page_types(frames.lazy(), disk.lazy()).collect()["page_type"].cast(pl.String).to_list()
    codes = type_codes(hashes == ZERO_HASH, np.where(known, flags, 0).astype(np.uint64), known, on_disk)
    assert [PAGE_TYPES[c] for c in codes] == by_polars
    assert set(by_polars) == set(PAGE_TYPES)  # every rule was exercised
