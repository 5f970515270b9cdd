"""`xpipe inspect`: the format of each file, and one line for a file that is not whole."""

import gzip
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from elfcore import elf_core
from test_xen import xen_core

from xpipe.errors import InputError
from xpipe.inspect import detect, inspect

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "data/default/web-1"


def pages(*fills: int) -> bytes:
    return b"".join(bytes([f]) * 4096 for f in fills)


def test_the_default_capture_s_files():
    assert inspect(WEB / "s0.xxh.gz") == (
        f"{WEB / 's0.xxh.gz'}: compact, 65,536 frames (256.0 MiB), frames 0-65,535, 26,192 distinct contents, "
        "hash xxh3-64")
    line = inspect(WEB / "reads.log.gz")
    assert line.startswith(f"{WEB / 'reads.log.gz'}: qemu-blk, 2,663 reads, ") and "(epoch; 132.2 s)" in line


def test_dumps_are_told_apart(tmp_path):
    raw = tmp_path / "m.raw"
    raw.write_bytes(pages(0, 7, 7, 9))
    assert detect(raw) == "raw"
    assert inspect(raw).endswith("raw, 4 frames (0.0 MiB), frames 0-3, 3 distinct contents, hash xxh3-64")
    core = tmp_path / "m.elf"
    core.write_bytes(elf_core([(0x2000, pages(1, 2))]))
    assert detect(core) == "elf"
    assert inspect(core).endswith("elf, 2 frames (0.0 MiB), frames 2-3, 2 distinct contents, hash xxh3-64")
    xen = tmp_path / "m.core"  # built to Xen's format description (tests/test_xen.py)
    xen.write_bytes(bytes(xen_core(pages(3, 0, 3), [7, 2, 9]).data))
    assert detect(xen) == "xen"
    assert inspect(xen).endswith("xen, 3 frames (0.0 MiB), frames 2-9, 2 distinct contents, hash xxh3-64")


@pytest.mark.parametrize("name, content, message", [
    ("empty.raw", b"", "offset 0: expected a trace or dump, found an empty file"),
    ("odd.bin", b"\x01" * 5000, "offset 0: expected one of the formats"),
    ("bad.xxh.gz", b"\x1f\x8b\x08\x00garbage", "expected a gzip file"),
    ("short.xxh", b"\x00" * 12, "offset 8: expected whole little-endian u64 words"),
    ("trace.log", b"1@1.000000:blk_co_preadv blk 0x1 bs 0x2 offset x bytes 4096 flags 0x0\n",
     "line 1: expected 'PID@SEC.USEC:blk_co_preadv"),
])
def test_a_file_that_is_not_whole_is_one_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError, match=message):
        inspect(path)


def test_command_prints_one_line_per_file_and_fails_on_a_bad_one(tmp_path):
    bad = tmp_path / "bad.xxh.gz"
    bad.write_bytes(gzip.compress(b"\x00" * 12))
    r = subprocess.run([sys.executable, "-m", "xpipe.cli", "inspect", str(WEB / "s0.xxh.gz"), str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 1
    assert r.stdout.count("\n") == 1 and "compact, 65,536 frames" in r.stdout
    assert r.stderr.strip() == f"xpipe inspect: {bad}, offset 8: expected whole little-endian u64 words, " \
                               "found 4 trailing bytes"
    assert "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "xpipe.cli", "inspect", "--format", "raw", str(bad)],
                       capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert np.frombuffer(gzip.decompress(bad.read_bytes()), np.uint8).size == 12  # untouched


def test_an_fiu_trace_is_told_by_its_lines(tmp_path):
    path = tmp_path / "day1.txt"
    path.write_text("89968195792462 20782 gzip 283193184 8 R 6 0 56f11b711d91a065a2b6458eca924523\n"
                    "89968195793462 20782 gzip 283193192 8 W 6 0 56f11b711d91a065a2b6458eca924523\n")
    assert detect(path) == "fiu"
    assert inspect(path).endswith("fiu, 2 requests (1 reads, 1 writes), devices 6:0, 1 processes, 0.0 s, "
                                  "1 distinct contents, hash md5 (most frequent, taken as the zero block: "
                                  "100.0% of requests)")


def test_lenient_skips_bad_records_and_counts_them_by_kind(tmp_path):
    fiu = tmp_path / "day1.txt"
    fiu.write_text("89968195792462 20782 gzip 283193184 8 R 6 0 56f11b711d91a065a2b6458eca924523\n"
                   "garbage\n"
                   "89968195792462 20782 gzip 283193184 0 R 6 0 56f11b711d91a065a2b6458eca924523\n")
    with pytest.raises(InputError, match="line 2: expected 'ts_ns pid process"):
        inspect(fiu)
    line = inspect(fiu, lenient=True)
    assert "fiu, 1 requests (1 reads, 0 writes)" in line
    assert line.endswith("; SKIPPED 2 bad records (malformed line: 1, size 0 or number out of range: 1)")
    blk = tmp_path / "reads.log"
    good = "1@1000.000001:blk_co_preadv blk 0x1 bs 0x2 offset 0 bytes 4096 flags 0x0\n"
    blk.write_text(good + "1@1000.000002:blk_co_preadv blk 0x1 bs 0x2 offset x bytes 4096 flags 0x0\n"
                   + "not a trace line at all\n" + good)
    line = inspect(blk, lenient=True)
    assert "qemu-blk, 2 reads, " in line and line.endswith("; SKIPPED 2 bad records (malformed line: 2)")
    dump = tmp_path / "m.raw"
    dump.write_bytes(pages(1))
    assert "SKIPPED" not in inspect(dump, lenient=True)  # a dump has no records to skip
