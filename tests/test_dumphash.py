"""`xpipe hash` (xpipe.dumphash): exact page tables of small dumps built here."""


import base64

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
import xxhash
from elfcore import elf_core

from xpipe import hashing
from xpipe.cli import main
from xpipe.dumphash import PAGES_ARROW_SCHEMA, hash_dump
from xpipe.errors import InputError
from xpipe.hashing import PAGE_SIZE
from xpipe.pagetypes import KPF
from xpipe.schemas import PAGES


def random_pages(n, seed=0, zero_every=3):
    """``n`` pages: every ``zero_every``-th is zeros, the others random; one repeats page 1."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, PAGE_SIZE), dtype=np.uint8)
    data[::zero_every] = 0
    if n > 4:
        data[4] = data[1]
    return data.tobytes()


def xxh(data):
    return [xxhash.xxh3_64_intdigest(data[i:i + PAGE_SIZE]) for i in range(0, len(data), PAGE_SIZE)]


@pytest.fixture(params=[1, 2], ids=["one-thread", "threads"])
def threads(request, monkeypatch):
    """Run each test on one thread and on two threads sharing tiny pieces."""
    if request.param > 1:
        monkeypatch.setattr(hashing, "CHUNK_PAGES", 3)
    return request.param


def test_pmemsave_matches_xxhash(tmp_path, threads):
    data = random_pages(20)
    (tmp_path / "guest-a.raw").write_bytes(data)
    rows = hash_dump(tmp_path / "guest-a.raw", tmp_path / "out.parquet", threads=threads)
    df = pl.read_parquet(tmp_path / "out.parquet")
    assert rows == 20
    assert df.schema == PAGES.schema
    assert df["hash"].to_list() == xxh(data)
    assert df["gfn"].to_list() == list(range(20))
    assert set(df["domain"]) == {"guest-a"} and set(df["snapshot"]) == {0} and set(df["time_s"]) == {0.0}
    # without kpageflags only zero pages are told apart
    zero = [i % 3 == 0 for i in range(20)]
    assert df["page_type"].to_list() == ["zero" if z else "unknown" for z in zero]


def test_arrow_schema_is_current():
    """xpipe hash writes without polars, with the ARROW:schema polars would write for PAGES."""
    def decoded(b64):
        return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(b64)))

    assert decoded(PAGES_ARROW_SCHEMA).equals(decoded(PAGES.arrow_schema()), check_metadata=True), \
        "PAGES changed: paste PAGES.arrow_schema() into xpipe.dumphash"


def test_elf_core_by_guest_physical_address(tmp_path, threads):
    low, high = random_pages(7, seed=1), random_pages(5, seed=2)
    # high RAM first in the file, and data at an offset that is not page-aligned
    (tmp_path / "vm.elf").write_bytes(elf_core([(0x100000, high), (0, low)], header_pad=8))
    rows = hash_dump(tmp_path / "vm.elf", tmp_path / "out.parquet", threads=threads)
    df = pl.read_parquet(tmp_path / "out.parquet")
    assert rows == 12
    assert df["gfn"].to_list() == list(range(7)) + list(range(256, 261))
    assert df["hash"].to_list() == xxh(low) + xxh(high)
    assert set(df["domain"]) == {"vm"}


def test_kind_auto_and_forced_agree(tmp_path):
    (tmp_path / "vm.elf").write_bytes(elf_core([(0, random_pages(3))]))
    hash_dump(tmp_path / "vm.elf", tmp_path / "auto.parquet")
    hash_dump(tmp_path / "vm.elf", tmp_path / "elf.parquet", kind="elf")
    assert pl.read_parquet(tmp_path / "auto.parquet").equals(pl.read_parquet(tmp_path / "elf.parquet"))


def test_kpageflags_give_page_types(tmp_path, threads):
    data = random_pages(6, zero_every=5)  # pages 0 and 5 are zero
    (tmp_path / "d.raw").write_bytes(data)
    flags = [1 << KPF["BUDDY"], 1 << KPF["ANON"], 1 << KPF["SLAB"], 0, 1 << KPF["PGTABLE"], 1 << KPF["NOPAGE"]]
    (tmp_path / "d.kpf").write_bytes(np.array(flags, dtype="<u8").tobytes())  # frame 5 past max_pfn
    hash_dump(tmp_path / "d.raw", tmp_path / "out.parquet", kpageflags=tmp_path / "d.kpf", threads=threads)
    types = pl.read_parquet(tmp_path / "out.parquet")["page_type"].to_list()
    assert types == ["free", "anonymous", "slab", "unknown", "pagetable", "zero"]


@pytest.mark.parametrize(
    ("content", "kind", "message"),
    [
        (b"\0" * (PAGE_SIZE + 100), "auto",
         r"bad\.raw, offset 4096: expected a whole number of 4096-byte pages"),
        (b"", "auto", r"bad\.raw, offset 0: expected guest memory, found an empty file"),
        (b"\0" * PAGE_SIZE, "elf", r"bad\.raw, offset 0: expected an ELF core"),
    ],
    ids=["partial-page", "empty", "not-elf"],
)
def test_bad_dump_named(tmp_path, content, kind, message):
    (tmp_path / "bad.raw").write_bytes(content)
    with pytest.raises(InputError, match=message):
        hash_dump(tmp_path / "bad.raw", tmp_path / "out.parquet", kind=kind)
    assert not (tmp_path / "out.parquet").exists()


def test_bad_kpageflags_named(tmp_path):
    (tmp_path / "d.raw").write_bytes(random_pages(2))
    (tmp_path / "d.kpf").write_bytes(b"\0" * 12)
    with pytest.raises(InputError, match=r"d\.kpf, offset 8: expected whole little-endian u64 words"):
        hash_dump(tmp_path / "d.raw", tmp_path / "out.parquet", kpageflags=tmp_path / "d.kpf")


def test_cli_reports_an_unwritable_output_in_one_line(tmp_path, capsys):
    (tmp_path / "g.raw").write_bytes(random_pages(2))
    (tmp_path / "out").mkdir()
    assert main(["hash", str(tmp_path / "g.raw"), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("xpipe hash: ") and "Is a directory" in err and "Traceback" not in err
    assert err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.raw", "out"]  # no temporary file left
    assert main(["hash", str(tmp_path), "-o", str(tmp_path / "o.parquet")]) == 2
    assert "expected a guest memory dump; not a regular file" in capsys.readouterr().err


def test_cli_reports_bad_input(tmp_path, capsys):
    assert main(["hash", str(tmp_path / "missing.raw"), "-o", str(tmp_path / "o.parquet")]) == 2
    assert "missing.raw: expected a guest memory dump; no such file" in capsys.readouterr().err
    (tmp_path / "g.raw").write_bytes(random_pages(4))
    assert main(["hash", str(tmp_path / "g.raw"), "-o", str(tmp_path / "o.parquet")]) == 0
    assert pl.read_parquet(tmp_path / "o.parquet").height == 4
