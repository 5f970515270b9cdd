"""Hostile input: every bad file gives one InputError naming it, never a traceback,
a silent wrong result, or damage to an input or an existing result.

Each test below guards one review finding (the number in its section's
comment) and fails when that fix is taken out.

Hostile inputs tried here: 117 made by hand (each parametrised case and each
bad file inside a test counted once; the valid controls beside them are not),
plus three hypothesis fuzz tests of 300 generated inputs each, 1017 in all:

- QEMU read traces (1, 5): 22 -- FIU lines, text, binary, zeros, blank lines,
  UTF-16, writes only, junk among reads, offsets past int64, reads before the
  guest started, NaN/inf start times
- kpageflags (2): 10 -- half, empty, one word too many, the page-hash file
  named, a copy of page hashes, short of an ELF core's last frame, and three
  wrong lengths and the dump itself given to ``xpipe hash``
- manifests (3, 5, 6, 7): 44 -- 9 unknown keys at every level, a key given
  twice, 6 bad times, 5 ids with newlines or blanks, a disk name that is an
  int, 6 encodings (UTF-16 with and without BOM, Latin-1, binary, control
  characters), 10 entries of the wrong kind, 6 YAML texts that break its
  constructors
- gzip (4): 16 -- a corrupt deflate stream, a truncated file, a bad CRC and no
  gzip at all, for page hashes, kpageflags, block hashes and read traces
- ``xpipe hash`` outputs and dumps (8, 11): 10 -- the dump or kpageflags as
  output (directly, by symlink, by hard link, by ``..``), an output name too
  long, an output under a file, a failing write, a dump growing or shrinking
- ``xpipe describe`` / ``xpipe synth`` / SyntheticSpec (9): 15
- fuzz (random bytes, truncations, bit flips, overwritten and inserted bytes of
  valid files): compact files plain and gzipped (also read as kpageflags),
  manifests, read traces plain and gzipped: 3 x 300

Two more fuzz tests of 300 inputs each cover the FIU trace reader and the
pmemsave / ELF dump reader (the Xen and kdump readers have their own).

Stale temporary files (10) are tested in tests/test_io.py.
"""

from __future__ import annotations

import codecs
import gzip
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import yaml
from elfcore import elf_core
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xpipe import dumphash
from xpipe.bundle import write_u64
from xpipe.cli import main
from xpipe.dumphash import hash_dump
from xpipe.errors import InputError
from xpipe.hashing import PAGE_SIZE, hash_pages
from xpipe.normalise import normalise_disk, normalise_frames, normalise_requests
from xpipe.pagetypes import KPF
from xpipe.readers import memdump
from xpipe.readers.blktrace import read_blk_trace
from xpipe.readers.compact import read_kpageflags, read_u64
from xpipe.readers.manifest import load_manifest
from xpipe.synthetic import SpecError, SyntheticSpec

# When a hypothesis test fails, its pytest plugin imports libcst (to suggest a patch), whose
# import warns (mypy_extensions.TypedDict is deprecated); with warnings as errors that ends the
# whole session in INTERNALERROR instead of reporting the failing example. Import it now, quietly.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

READ = "4242@{sec}.{usec:06d}:blk_co_preadv blk 0x55 bs 0x66 offset {off} bytes {n} flags 0x0\n"
FIU = "89968195792462 20782 gzip 283193184 8 R 6 0 56f11b711d91a065a2b6458eca924523\n"
#: gzip header, then a deflate block of the reserved type 3: zlib.error "invalid block type"
BAD_DEFLATE = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\x07junk-junk-junk"
FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def read(sec, usec=0, off=0, n=4096):
    return READ.format(sec=sec, usec=usec, off=off, n=n)


def pages(*fills):
    return b"".join(bytes([f]) * PAGE_SIZE for f in fills)


# -- 1. QEMU read traces: no blk_co_preadv line, or lines of no QEMU trace ---------------

@pytest.mark.parametrize("content", [
    FIU.encode(),                                        # an FIU trace line
    FIU.encode() * 3,
    b"hello world\n",                                    # text
    b"not a trace",                                      # text, no newline
    bytes(range(256)) * 4,                               # binary
    b"\x00" * 64,                                        # zeros
    b"\n\n  \n",                                         # blank lines only
    b"4242@100.000000:blk_co_pwritev blk 0x55 bs 0x66 offset 0 bytes 4096 flags 0x0\n",  # no reads traced
    b"\xff\xfe" + "blk_co_preadv".encode("utf-16-le"),   # UTF-16
], ids=["fiu", "fiu3", "text", "text-no-newline", "binary", "zeros", "blank", "writes-only", "utf16"])
def test_a_trace_without_reads_is_refused(tmp_path, content):
    (tmp_path / "r.log").write_bytes(content)
    with pytest.raises(InputError, match=r"r\.log(, line \d+)?: expected"):
        read_blk_trace(tmp_path / "r.log", 0.0)


@pytest.mark.parametrize("name", ["r.log", "r.log.gz"])
def test_an_empty_trace_is_a_guest_that_read_nothing(tmp_path, name):
    (tmp_path / name).write_bytes(gzip.compress(b"") if name.endswith(".gz") else b"")
    t, off, n = read_blk_trace(tmp_path / name, 100.0, disk_bytes=1 << 20)
    assert len(t) == len(off) == len(n) == 0


@pytest.mark.parametrize("bad", [FIU, "garbage\n", "hello world\n", "\x00\x01\x02\n"])
def test_a_line_of_no_trace_event_among_reads_is_named(tmp_path, bad):
    (tmp_path / "r.log").write_text(read(100) + bad + read(101))
    with pytest.raises(InputError, match=r"r\.log, line 2: expected a QEMU log-backend trace line"):
        read_blk_trace(tmp_path / "r.log", 100.0)


def test_other_trace_events_are_skipped(tmp_path):
    log = ('4242@100.000001:bdrv_open_common bs 0x66 filename "/d.img" flags 0x0 format_name "raw"\n'
           + read(100, 500000) + "\n"
           + "4242@100.600000:blk_co_pwritev blk 0x55 bs 0x66 offset 0 bytes 4096 flags 0x0\r\n"
           + "virtio_blk_req_complete vdev 0x1 req 0x2 status 0\n" + read(101))
    (tmp_path / "r.log").write_text(log)
    t, _, n = read_blk_trace(tmp_path / "r.log", 100.0)
    assert t.tolist() == pytest.approx([0.5, 1.0]) and n.tolist() == [4096, 4096]


@pytest.mark.parametrize("line", [
    READ.format(sec=1, usec=0, off="9" * 30, n=4096),         # offset past int64
    READ.format(sec=1, usec=0, off=2**63 - 4096, n=8192),     # end past int64
], ids=["huge-offset", "end-past-int64"])
def test_reads_past_int64_are_named(tmp_path, line):
    (tmp_path / "r.log").write_text(line)
    with pytest.raises(InputError, match=r"r\.log, line 1: expected"):
        read_blk_trace(tmp_path / "r.log", None)


# -- 5. reads before the guest started; non-finite start --------------------------------

@pytest.mark.parametrize("epoch, line", [(200.0, 1), (101.5, 1), (100.5, 2)])
def test_reads_before_the_guest_started_are_refused(tmp_path, epoch, line):
    (tmp_path / "r.log").write_text(read(101, 0) + read(100, 0))
    with pytest.raises(InputError, match=rf"r\.log, line {line}: expected a read after the guest started"):
        read_blk_trace(tmp_path / "r.log", epoch)


@pytest.mark.parametrize("epoch", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_trace_start_is_refused(tmp_path, epoch):
    (tmp_path / "r.log").write_text(read(100))
    with pytest.raises(InputError, match=r"r\.log: expected a finite start time"):
        read_blk_trace(tmp_path / "r.log", epoch)


# -- manifests -------------------------------------------------------------------------

def bundle(tmp_path, domain=None, snapshot=None, top=None, disk=None, frames=256):
    """A one-domain bundle in ``tmp_path``; the keyword dicts change its manifest's entries."""
    mem = pages(*([0] * (frames - 3) + [1, 2, 3]))
    write_u64(tmp_path / "s0.xxh", hash_pages(mem))
    write_u64(tmp_path / "s0.kpf", np.full(frames, 1 << KPF["ANON"], dtype=np.uint64))
    write_u64(tmp_path / "d.blk.xxh", hash_pages(pages(0, 1, 2, 3)))
    (tmp_path / "r.log").write_text(read(1000, 0) + read(1001, 0, off=8192))
    snap = {"time_s": 10.0, "pages": "s0.xxh", "kpageflags": "s0.kpf", **(snapshot or {})}
    dom = {"id": "a", "workload": "idle", "memory_mib": frames // 256, "disk": "d", "reads": "r.log",
           "reads_start_epoch_s": 999.5, "snapshots": [snap], **(domain or {})}
    m = {"format": "xpipe-capture/1", "disks": {"d": {"block_hashes": "d.blk.xxh", **(disk or {})}},
         "domains": [dom], **(top or {})}
    for part in (snap, dom, m):
        for k in [k for k, v in part.items() if v is DROP]:
            del part[k]
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(m, sort_keys=False))
    return tmp_path / "manifest.yaml"


DROP = object()


def test_the_test_bundle_is_valid(tmp_path):
    m = load_manifest(bundle(tmp_path))
    d = m.domains[0]
    frames = normalise_frames(d)
    assert frames["kpageflags"].null_count() == 0 and frames.height == 256
    assert normalise_requests(d, 4 * PAGE_SIZE)["time_s"].to_list() == [0.5, 1.5]


# 3. unknown keys, at every level, with what was meant
@pytest.mark.parametrize("change, message", [
    ({"snapshot": {"kpagefalgs": "s0.kpf", "kpageflags": DROP}},
     r"domains\[0\]\.snapshots\[0\]\.kpagefalgs: unknown key; did you mean 'kpageflags'\?"),
    ({"snapshot": {"time": 10.0}}, r"domains\[0\]\.snapshots\[0\]\.time: unknown key; did you mean 'time_s'\?"),
    ({"snapshot": {"pagse": "s0.xxh", "pages": DROP}},
     r"domains\[0\]\.snapshots\[0\]\.pagse: unknown key; did you mean 'pages'\?"),
    ({"domain": {"wrkload": "x"}}, r"domains\[0\]\.wrkload: unknown key; did you mean 'workload'\?"),
    ({"domain": {"reads_start_epoch": 999.5, "reads_start_epoch_s": DROP}},
     r"domains\[0\]\.reads_start_epoch: unknown key; did you mean 'reads_start_epoch_s'\?"),
    ({"disk": {"block_hash": "d.blk.xxh"}}, r"disks\.d\.block_hash: unknown key; did you mean 'block_hashes'\?"),
    ({"top": {"synthtic": True}}, r"manifest\.yaml, synthtic: unknown key; did you mean 'synthetic'\?"),
    ({"top": {"zzz": 1}}, r"manifest\.yaml, zzz: unknown key \(known: format, "),
    ({"top": {7: 1}}, r"manifest\.yaml, 7: unknown key"),
], ids=["kpagefalgs", "time", "pagse", "wrkload", "reads_start_epoch", "block_hash", "synthtic", "zzz", "int"])
def test_unknown_manifest_keys_are_named_with_what_was_meant(tmp_path, change, message):
    with pytest.raises(InputError, match=message):
        load_manifest(bundle(tmp_path, **change))


def test_a_key_given_twice_is_refused(tmp_path):
    path = bundle(tmp_path)
    text = path.read_text().replace("  kpageflags: s0.kpf", "  kpageflags: s0.kpf\n    kpageflags: s0.kpf")
    assert text.count("kpageflags") == 2
    path.write_text(text)
    with pytest.raises(InputError, match=r"manifest\.yaml, line \d+: expected YAML \(duplicate key 'kpageflags'\)"):
        load_manifest(path)


# 5. snapshot and start times
@pytest.mark.parametrize("change, message", [
    ({"snapshot": {"time_s": -1.0}}, r"snapshots\[0\]\.time_s: expected seconds since the guest started"),
    ({"snapshot": {"time_s": float("nan")}}, r"snapshots\[0\]\.time_s: expected a finite number, got nan"),
    ({"snapshot": {"time_s": float("inf")}}, r"snapshots\[0\]\.time_s: expected a finite number, got inf"),
    ({"snapshot": {"time_s": True}}, r"snapshots\[0\]\.time_s: expected float, got True"),
    ({"domain": {"reads_start_epoch_s": float("inf")}}, r"reads_start_epoch_s: expected a finite number"),
    ({"domain": {"reads_start_epoch_s": float("nan")}}, r"reads_start_epoch_s: expected a finite number"),
], ids=["negative", "nan", "inf", "bool", "epoch-inf", "epoch-nan"])
def test_bad_times_are_refused(tmp_path, change, message):
    with pytest.raises(InputError, match=message):
        load_manifest(bundle(tmp_path, **change))


def test_reads_all_before_the_guest_started_are_refused(tmp_path):
    d = load_manifest(bundle(tmp_path, domain={"reads_start_epoch_s": 5000.0})).domains[0]
    with pytest.raises(InputError, match=r"r\.log, line 1: expected a read after the guest started"):
        normalise_requests(d, 4 * PAGE_SIZE)


# 6. ids
@pytest.mark.parametrize("did", ["a\n", "a\nb", "\na", "a b", ""])
def test_a_domain_id_with_a_newline_is_refused(tmp_path, did):
    with pytest.raises(InputError, match=r"domains\[0\]\.id: expected a unique id"):
        load_manifest(bundle(tmp_path, domain={"id": did}))


def test_a_disk_name_that_is_no_name_is_refused(tmp_path):
    path = bundle(tmp_path)
    path.write_text(path.read_text().replace("  d:\n", "  1:\n").replace("disk: d", "disk: '1'"))
    with pytest.raises(InputError, match=r"disks\.1: expected a disk name"):
        load_manifest(path)


# 7. encodings and entries of the wrong kind
@pytest.mark.parametrize("encode, message", [
    (lambda t: codecs.BOM_UTF16_LE + t.encode("utf-16-le"), r"offset 0: expected UTF-8 text, found a UTF-16"),
    (lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"), r"offset 0: expected UTF-8 text, found a UTF-16"),
    (lambda t: t.encode("utf-16-le"), r"expected UTF-8 text|expected YAML"),
    (lambda t: (t + "description: caf\xe9\n").encode("latin-1"), r"offset \d+: expected UTF-8 text, found byte 0xe9"),
    (lambda t: t.encode() + b"\xff\xfe\x00", r"offset \d+: expected UTF-8 text"),
    (lambda t: t.encode() + b"description: \x07bell\n", r"line \d+: expected YAML"),
], ids=["utf16le-bom", "utf16be-bom", "utf16-no-bom", "latin1", "binary-tail", "control-char"])
def test_a_manifest_that_is_not_utf8_is_named(tmp_path, encode, message):
    path = bundle(tmp_path)
    path.write_bytes(encode(path.read_text()))
    with pytest.raises(InputError, match=r"manifest\.yaml, " + message):
        load_manifest(path)


def test_a_manifest_with_utf8_bom_loads(tmp_path):
    path = bundle(tmp_path)
    path.write_bytes(codecs.BOM_UTF8 + path.read_bytes())
    assert load_manifest(path).domains[0].id == "a"


@pytest.mark.parametrize("change, message", [
    ({"domain": {"snapshots": [5]}}, r"domains\[0\]\.snapshots\[0\]: expected a mapping with time_s"),
    ({"domain": {"snapshots": [["pages", "s0.xxh"]]}}, r"domains\[0\]\.snapshots\[0\]: expected a mapping"),
    ({"domain": {"snapshots": ["pages"]}}, r"domains\[0\]\.snapshots\[0\]: expected a mapping"),
    ({"domain": {"snapshots": {"pages": "s0.xxh"}}}, r"domains\[0\]\.snapshots: expected list"),
    ({"top": {"domains": [["a"]]}}, r"domains\[0\]: expected a mapping"),
    ({"top": {"domains": "a"}}, r"domains: expected list"),
    ({"top": {"disks": {"d": "d.blk.xxh"}}}, r"disks\.d: expected a mapping"),
    ({"snapshot": {"pages": 5}}, r"snapshots\[0\]\.pages: expected str, got 5"),
    ({"snapshot": {"pages": "x" * 300}}, r"snapshots\[0\]\.pages: expected a file name"),
    ({"snapshot": {"pages": "a\0b"}}, r"snapshots\[0\]\.pages: file 'a\\x00b' does not exist"),
], ids=["int", "list", "str", "mapping", "domain-list", "domains-str", "disk-str", "pages-int",
        "name-too-long", "nul"])
def test_entries_of_the_wrong_kind_are_named(tmp_path, change, message):
    with pytest.raises(InputError, match=message):
        load_manifest(bundle(tmp_path, **change))


@pytest.mark.parametrize("text", ["time_s: 2024-13-45\n", "[unclosed\n", "!!python/object:os.system {}\n",
                                  "a: !!binary 'abc'\n", "42\n", ""])
def test_yaml_that_breaks_its_constructors_is_named(tmp_path, text):
    (tmp_path / "manifest.yaml").write_text(text)
    with pytest.raises(InputError, match=r"manifest\.yaml(, line \d+)?: expected"):
        load_manifest(tmp_path / "manifest.yaml")


# -- 2. kpageflags: one word per frame, and not a page-hash file --------------------------

@pytest.mark.parametrize("words, message", [
    (128, r"s0\.kpf, offset 1024: expected one u64 kpageflags word per guest frame 0\.\.255 \(256 words"),
    (0, r"s0\.kpf, offset 0: expected one u64 kpageflags word per guest frame"),
    (257, r"s0\.kpf, offset 2048: expected one u64 kpageflags word per guest frame"),
], ids=["half", "empty", "one-more"])
def test_kpageflags_of_the_wrong_length_are_refused(tmp_path, words, message):
    d = load_manifest(bundle(tmp_path)).domains[0]
    write_u64(tmp_path / "s0.kpf", np.full(words, 1 << KPF["ANON"], dtype=np.uint64))
    with pytest.raises(InputError, match=message):
        normalise_frames(d)


def test_kpageflags_naming_the_page_hash_file_are_refused(tmp_path):
    with pytest.raises(InputError, match=r"snapshots\[0\]\.kpageflags: expected the guest's kpageflags, "
                                         r"not the snapshot file domains\[0\]\.snapshots\[0\]\.pages names"):
        load_manifest(bundle(tmp_path, snapshot={"kpageflags": "s0.xxh"}))


def test_kpageflags_holding_page_hashes_are_refused(tmp_path):
    d = load_manifest(bundle(tmp_path)).domains[0]
    (tmp_path / "s0.kpf").write_bytes((tmp_path / "s0.xxh").read_bytes())  # a copy of the page hashes
    with pytest.raises(InputError, match=r"s0\.kpf, offset \d+: expected kpageflags words \(bits 48-63 unused\)"):
        normalise_frames(d)


def test_kpageflags_are_indexed_by_frame_number(tmp_path):
    """An ELF core with a hole: one word per frame number up to the last frame, holes included."""
    (tmp_path / "c.elf").write_bytes(elf_core([(0, pages(1, 2)), (4 * PAGE_SIZE, pages(3))]))
    write_u64(tmp_path / "c.kpf", np.array([1 << KPF["ANON"]] * 4 + [1 << KPF["SLAB"]], dtype=np.uint64))
    hash_dump(tmp_path / "c.elf", tmp_path / "o.parquet", kpageflags=tmp_path / "c.kpf")
    import polars as pl

    assert pl.read_parquet(tmp_path / "o.parquet")["page_type"].to_list() == ["anonymous", "anonymous", "slab"]
    write_u64(tmp_path / "c.kpf", np.full(3, 1 << KPF["ANON"], dtype=np.uint64))  # one per frame held: short
    with pytest.raises(InputError, match=r"c\.kpf, offset 24: expected one u64 kpageflags word per guest frame 0\.\.4"):
        hash_dump(tmp_path / "c.elf", tmp_path / "o.parquet", kpageflags=tmp_path / "c.kpf")


@pytest.mark.parametrize("words", [0, 2, 5], ids=["empty", "short", "long"])
def test_xpipe_hash_refuses_kpageflags_of_the_wrong_length(tmp_path, capsys, words):
    (tmp_path / "g.raw").write_bytes(pages(0, 1, 2, 3))
    write_u64(tmp_path / "g.kpf", np.zeros(words, dtype=np.uint64))
    assert main(["hash", str(tmp_path / "g.raw"), "-o", str(tmp_path / "o.parquet"),
                 "--kpageflags", str(tmp_path / "g.kpf")]) == 2
    err = capsys.readouterr().err
    assert "g.kpf, offset" in err and "expected one u64 kpageflags word per guest frame 0..3" in err
    assert err.count("\n") == 1 and not (tmp_path / "o.parquet").exists()


# -- 4. corrupt gzip files of every kind -------------------------------------------------

def gz_damage(data: bytes, how: str) -> bytes:
    z = gzip.compress(data, mtime=0)
    if how == "deflate":
        return BAD_DEFLATE
    if how == "truncated":
        return z[: len(z) // 2]
    if how == "crc":
        return z[:-8] + bytes(8)
    return b"not gzip at all"


@pytest.mark.parametrize("how", ["deflate", "truncated", "crc", "not-gzip"])
@pytest.mark.parametrize("kind", ["pages", "kpageflags", "blocks", "reads"])
def test_a_damaged_gzip_file_is_named(tmp_path, kind, how):
    path = bundle(tmp_path)
    m = yaml.safe_load(path.read_text())
    key = {"pages": "s0.xxh", "kpageflags": "s0.kpf", "blocks": "d.blk.xxh", "reads": "r.log"}[kind]
    damaged = tmp_path / (key + ".gz")
    damaged.write_bytes(gz_damage((tmp_path / key).read_bytes(), how))
    path.write_text(path.read_text().replace(f": {key}\n", f": {key}.gz\n"))
    assert yaml.safe_load(path.read_text()) != m
    d = load_manifest(path).domains[0]
    with pytest.raises(InputError, match=rf"{key}\.gz: expected a whole gzip file"):
        if kind == "blocks":
            normalise_disk(d.disk)
        elif kind == "reads":
            normalise_requests(d, 4 * PAGE_SIZE)
        else:
            normalise_frames(d)


# -- 8. xpipe hash never writes over its inputs; errors name the output ----------------

def test_xpipe_hash_refuses_to_write_over_its_inputs(tmp_path, capsys):
    dump = pages(0, 1, 2, 3)
    (tmp_path / "g.raw").write_bytes(dump)
    write_u64(tmp_path / "g.kpf", np.zeros(4, dtype=np.uint64))
    kpf = (tmp_path / "g.kpf").read_bytes()
    (tmp_path / "link.raw").symlink_to(tmp_path / "g.raw")
    os.link(tmp_path / "g.kpf", tmp_path / "hard.kpf")
    cases = [
        ([str(tmp_path / "g.raw"), "-o", str(tmp_path / "g.raw")], "g.raw", "dump"),
        ([str(tmp_path / "g.raw"), "-o", str(tmp_path / "link.raw")], "link.raw", "dump"),
        ([str(tmp_path / "link.raw"), "-o", str(tmp_path / "sub" / ".." / "g.raw")], "g.raw", "dump"),
        ([str(tmp_path / "g.raw"), "-o", str(tmp_path / "g.kpf"), "--kpageflags", str(tmp_path / "g.kpf")],
         "g.kpf", "kpageflags"),
        ([str(tmp_path / "g.raw"), "-o", str(tmp_path / "hard.kpf"), "--kpageflags", str(tmp_path / "g.kpf")],
         "hard.kpf", "kpageflags"),
    ]
    (tmp_path / "sub").mkdir()
    for argv, named, what in cases:
        assert main(["hash", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert named in err and f"expected an output file other than the {what}" in err, err
        assert err.count("\n") == 1
    assert (tmp_path / "g.raw").read_bytes() == dump and (tmp_path / "g.kpf").read_bytes() == kpf
    assert (tmp_path / "link.raw").is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.kpf", "g.raw", "hard.kpf", "link.raw", "sub"]


def test_xpipe_hash_refuses_the_dump_as_kpageflags(tmp_path, capsys):
    (tmp_path / "g.raw").write_bytes(pages(0, 1))
    assert main(["hash", str(tmp_path / "g.raw"), "-o", str(tmp_path / "o.parquet"),
                 "--kpageflags", str(tmp_path / "g.raw")]) == 2
    assert "g.raw: expected the guest's kpageflags, not the dump itself" in capsys.readouterr().err


def test_an_unwritable_output_is_named_not_its_temporary_file(tmp_path, capsys):
    (tmp_path / "g.raw").write_bytes(pages(0, 1))
    long = tmp_path / ("o" * 250 + ".pq")  # a legal name whose temporary name is too long
    assert main(["hash", str(tmp_path / "g.raw"), "-o", str(long)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"xpipe hash: {long}: File name too long") and ".tmp" not in err
    assert main(["hash", str(tmp_path / "g.raw"), "-o", str(tmp_path / "g.raw" / "o.parquet")]) == 1
    err = capsys.readouterr().err
    assert err == f"xpipe hash: {tmp_path / 'g.raw' / 'o.parquet'}: Not a directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.raw"]


def test_a_write_failing_on_the_temporary_file_names_the_output(tmp_path, capsys, monkeypatch):
    (tmp_path / "g.raw").write_bytes(pages(0, 1))

    def full_disk(path, *args, **kwargs):
        raise OSError(28, os.strerror(28), str(path))  # ENOSPC, as the writer reports it

    monkeypatch.setattr(dumphash, "write_table", full_disk)
    assert main(["hash", str(tmp_path / "g.raw"), "-o", str(tmp_path / "o.parquet")]) == 1
    err = capsys.readouterr().err
    assert err == f"xpipe hash: {tmp_path / 'o.parquet'}: {os.strerror(28)}\n"


# -- 11. a dump that changes while it is hashed -------------------------------------------

@pytest.mark.parametrize("change", ["grow", "shrink"])
def test_a_dump_that_changes_while_hashed_is_refused(tmp_path, monkeypatch, change):
    """Growth, or shrinking before the hashing reads it, is caught."""
    dump = tmp_path / "g.raw"
    dump.write_bytes(pages(0, 1, 2, 3))
    real = memdump.hash_file

    def changing(path, ranges, threads=0):
        if change == "shrink":
            os.truncate(path, PAGE_SIZE)
            return real(path, ranges, threads)
        out = real(path, ranges, threads)
        with open(path, "ab") as f:
            f.write(pages(9))
        return out

    monkeypatch.setattr(memdump, "hash_file", changing)
    with pytest.raises(InputError, match=r"g\.raw: expected a dump no process is writing; it changed while it "
                                         r"was read \(16384 -> (20480|4096) bytes\)"):
        hash_dump(dump, tmp_path / "o.parquet")
    assert not (tmp_path / "o.parquet").exists()


def _maps(pid: int, path) -> bool:
    """Whether the process has ``path`` mapped now (/proc/PID/maps); False once it is gone."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return any(line.rstrip().endswith(str(path)) for line in f)
    except OSError:
        return False


def test_a_dump_that_shrinks_while_hashed_is_refused_in_one_line(tmp_path):
    """A dump cut short while the hashing threads read it: one line and exit 2, not a
    SIGBUS death (the C hashing turns SIGBUS in its mapped window into a short file).
    The dump is sparse and large, and is cut once the process maps it, so the cut lands
    while the threads are still reading (or just before: the change is caught either way)."""
    dump = tmp_path / "g.raw"
    with open(dump, "wb") as f:
        f.truncate(64 << 30)
    out = tmp_path / "o.parquet"
    proc = subprocess.Popen([sys.executable, "-m", "xpipe.cli", "hash", str(dump), "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not _maps(proc.pid, dump) and proc.poll() is None:
        time.sleep(0.005)
    os.truncate(dump, 1 << 20)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr  # bad input (1: the output cannot be written)
    assert stderr.count("\n") == 1 and "Traceback" not in stderr
    assert stderr.startswith(f"xpipe hash: {dump}: expected a dump no process is writing; it changed while it "
                             f"was read ({64 << 30} -> {1 << 20} bytes)")
    assert not out.exists()


# -- 9. xpipe describe on a file that is no database; xpipe synth's spec -------------------

@pytest.mark.parametrize("content", [b"not a database\n", b"", None], ids=["text", "empty", "folder"])
def test_describe_a_file_that_is_no_database_in_one_line(tmp_path, capsys, content):
    db = tmp_path / "x.duckdb"
    if content is None:
        db.mkdir()
    else:
        db.write_bytes(content)
    assert main(["describe", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"xpipe describe: {db}: ") and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("value", ["-5", "0"])
def test_synth_refuses_a_bad_memory_size_in_one_line(tmp_path, value):
    out = tmp_path / "bundle"
    r = subprocess.run([sys.executable, "-m", "xpipe.cli", "synth", str(out), "--memory-mib", value],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == f"xpipe synth: --memory-mib: expected a whole number of MiB, 1 or more; got {value}\n"
    assert not out.exists()


@pytest.mark.parametrize("fields, field", [
    ({"memory_mib": 0}, "memory_mib"),
    ({"disk_mib": -1}, "disk_mib"),
    ({"seed": -1}, "seed"),
    ({"snapshot_times_s": (20.0, 10.0)}, "snapshot_times_s"),
    ({"snapshot_times_s": (float("nan"),)}, "snapshot_times_s"),
    ({"workloads": ("a", "a"), "domains_per_workload": (1, 1)}, "workloads"),
    ({"workloads": ("boot",), "domains_per_workload": (1,)}, "workloads"),
    ({"domains_per_workload": (0, 0, 0, 0, 0)}, "domains_per_workload"),
    ({"disk_mib": 1, "workloads": tuple(f"w{i}" for i in range(20)), "domains_per_workload": (1,) * 20},
     "disk_mib"),
    ({"compress": "yes"}, "compress"),
], ids=["memory", "disk", "seed", "times-order", "times-nan", "workloads-twice", "workload-boot",
        "no-domains", "disk-too-small", "compress"])
def test_synthetic_spec_fields_are_checked(fields, field):
    with pytest.raises(SpecError, match=rf"SyntheticSpec, {field}: expected") as e:
        SyntheticSpec(**fields)
    assert e.value.field == field


def test_the_smallest_synthetic_spec_makes_a_bundle_xpipe_reads(tmp_path):
    from xpipe.synthetic import write_synthetic_bundle

    m = load_manifest(write_synthetic_bundle(tmp_path, SyntheticSpec(memory_mib=1, disk_mib=1,
                                                                     snapshot_times_s=(0.5,))))
    blocks = normalise_disk(m.disks["image"])
    for d in m.domains:
        assert normalise_frames(d).height == 256
        normalise_requests(d, blocks.height * PAGE_SIZE)


# -- fuzz: random bytes, truncations and bit flips of valid files -------------------------

def mutations(valid: bytes):
    """Random bytes, or the valid file cut short, with bits flipped, or with bytes overwritten."""
    flips = st.lists(st.tuples(st.integers(0, max(len(valid) - 1, 0)), st.integers(0, 7)), max_size=8)

    def flipped(fs):
        b = bytearray(valid)
        for i, bit in fs:
            b[i] ^= 1 << bit
        return bytes(b)

    def edited(edits):
        b = bytearray(valid)
        for i, v in edits:
            b[i:i + 1] = bytes([v])
        return bytes(b)

    return st.one_of(
        st.binary(max_size=512),
        st.integers(0, len(valid)).map(lambda n: valid[:n]),
        flips.map(flipped),
        st.lists(st.tuples(st.integers(0, max(len(valid) - 1, 0)), st.integers(0, 255)), max_size=4).map(edited),
        st.tuples(st.integers(0, len(valid)), st.binary(min_size=1, max_size=16)).map(
            lambda a: valid[:a[0]] + a[1] + valid[a[0]:]),
    )


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


_COMPACT = np.array([0, 1, 2**64 - 1, 12345, 1 << KPF["ANON"], 7, 8, 9], dtype=np.uint64).astype("<u8").tobytes()


@FUZZ
@given(data=st.data(), gz=st.booleans())
def test_fuzz_compact_reader(fuzz_dir, data, gz):
    valid = gzip.compress(_COMPACT, mtime=0) if gz else _COMPACT
    content = data.draw(mutations(valid))
    path = fuzz_dir / ("f.xxh.gz" if gz else "f.xxh")
    path.write_bytes(content)
    try:
        words = read_u64(path)
    except InputError as e:
        assert str(path) in str(e)
        return
    assert words.dtype == np.uint64
    try:
        flags, known = read_kpageflags(path, np.arange(8, dtype=np.int64))
    except InputError as e:
        assert str(path) in str(e)
        return
    assert len(flags) == 8 and known.all() and not (flags >> np.uint64(48)).any()


@pytest.fixture(scope="module")
def fuzz_bundle(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz-bundle")
    path = bundle(d)
    path.write_text(path.read_text() + "description: a valid manifest, mutated\nsynthetic: true\n")
    return path


@FUZZ
@given(data=st.data())
def test_fuzz_manifest_loader(fuzz_bundle, data):
    valid = fuzz_bundle.read_bytes()
    path = fuzz_bundle.with_name("mutated.yaml")
    path.write_bytes(data.draw(mutations(valid)))
    try:
        m = load_manifest(path)
    except InputError as e:
        assert str(path) in str(e)
        return
    assert m.domains and all(d.snapshots for d in m.domains)  # a QEMU capture's domains have memory


_TRACE = ("4242@1000.000001:bdrv_open_common bs 0x66 filename \"/d.img\" flags 0x0 format_name \"raw\"\n"
          + read(1000, 5) + read(1001, 250000, off=4096, n=8192) + read(1002, 999999, off=0, n=512)).encode()


@FUZZ
@given(data=st.data(), gz=st.booleans(), epoch=st.sampled_from([None, 999.0, 1001.0]))
def test_fuzz_blktrace_reader(fuzz_dir, data, gz, epoch):
    valid = gzip.compress(_TRACE, mtime=0) if gz else _TRACE
    path = fuzz_dir / ("r.log.gz" if gz else "r.log")
    path.write_bytes(data.draw(mutations(valid)))
    try:
        t, off, n = read_blk_trace(path, epoch, disk_bytes=1 << 20)
    except InputError as e:
        assert str(path) in str(e)
        return
    assert len(t) == len(off) == len(n)
    assert ((off >= 0) & (n > 0) & (off + n <= 1 << 20)).all()
    if epoch is not None:
        assert (t >= -1e-5).all()


# -- readers added later: FIU traces and pmemsave / ELF dumps, fuzzed alike -----------------

_FIU = ("89968195792462 20782 gzip 283193184 8 R 6 0 56f11b711d91a065a2b6458eca924523\n"
        "89968195793462 30000 httpd 16 8 W 8 16 00112233445566778899aabbccddeeff\n").encode()


@FUZZ
@given(data=st.data())
def test_fuzz_fiu_reader(tmp_path_factory, data):
    from xpipe.readers.fiu import read_fiu

    path = tmp_path_factory.mktemp("fiu") / "t.fiu"
    path.write_bytes(data.draw(mutations(_FIU)))
    try:
        tr = read_fiu(path)
    except InputError as e:
        assert str(path) in str(e)
        return
    assert len(tr) >= 1 and np.isfinite(tr.time_s).all() and (tr.sectors > 0).all()


@FUZZ
@given(data=st.data())
def test_fuzz_dump_reader(tmp_path_factory, data):
    from elfcore import elf_core

    from xpipe.readers.memdump import read_dump

    valid = elf_core([(0x2000, pages(1, 2)), (0x9000, pages(0))])
    path = tmp_path_factory.mktemp("dump") / "m.elf"
    path.write_bytes(data.draw(mutations(valid)))
    try:
        gfn, h = read_dump(path)
    except InputError as e:
        assert str(path) in str(e)
        return
    assert len(gfn) == len(h) and (np.diff(gfn) > 0).all()
