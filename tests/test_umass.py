"""UMass memory traces (Memory Buddies): memory-only domains with 32-bit hashes.

The files here are built to the trace set's published description (an ASCII
header, then one 32-bit hash per page); no original trace is read.
"""

import gzip
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xpipe.errors import InputError
from xpipe.hashing import ZERO_HASH
from xpipe.inspect import detect, inspect
from xpipe.readers.manifest import load_manifest
from xpipe.readers.umass import read_umass, read_umass_trace

HEADER = b"OS: Linux 2.6.18\nprocesses: init sshd httpd\n"
Z, A, B = 0xDEADBEEF, 0x00000001, 0xFFFFFFFF  # Z the most frequent: taken as the zero page


def trace(path, hashes, header=HEADER):
    path.write_bytes(header + np.array(hashes, dtype="<u4").tobytes())
    return path


def test_header_and_hashes_read_exactly(tmp_path):
    t = read_umass_trace(trace(tmp_path / "m.dat", [A, Z, Z, B, Z, A]))
    assert t.header == ["OS: Linux 2.6.18", "processes: init sshd httpd"]
    assert t.hashes_at == len(HEADER)
    assert t.hashes.tolist() == [A, Z, Z, B, Z, A]


def test_frames_and_the_zero_page_from_the_data(tmp_path):
    gfn, h = read_umass(trace(tmp_path / "m.dat", [A, Z, Z, B, Z, A]))
    assert gfn.tolist() == [0, 1, 2, 3, 4, 5]
    assert h.tolist() == [A, ZERO_HASH, ZERO_HASH, B, ZERO_HASH, A]
    assert h.dtype == np.uint64


def test_a_hash_list_whose_first_bytes_look_like_text_stays_binary(tmp_path):
    """The header ends at the first line that is not text: hashes of printable bytes
    before a non-text byte stay hashes."""
    words = [int.from_bytes(b"abcd", "little"), int.from_bytes(b"ef\x00\x01", "little"), Z, Z]
    t = read_umass_trace(trace(tmp_path / "m.dat", words))
    assert t.hashes.tolist() == words and len(t.header) == 2


def test_gzipped_trace_reads_the_same(tmp_path):
    raw = trace(tmp_path / "m.dat", [A, Z, Z])
    (tmp_path / "m.dat.gz").write_bytes(gzip.compress(raw.read_bytes()))
    assert read_umass_trace(tmp_path / "m.dat.gz").hashes.tolist() == [A, Z, Z]


@pytest.mark.parametrize("content, where, message", [
    (b"", "offset 0", "found no header line"),
    (b"\x00\x01\x02\x03", "offset 0", "found no header line"),
    (HEADER, f"offset {len(HEADER)}", "the file ends after its header"),
    (HEADER + b"\x01\x02\x03\x04\x05\x06", f"offset {len(HEADER) + 4}", "ends in 2 trailing bytes"),
])
def test_malformed_traces_are_named(tmp_path, content, where, message):
    (tmp_path / "m.dat").write_bytes(content)
    with pytest.raises(InputError, match=rf"m\.dat, {where}: expected a UMass memory trace.*{message}"):
        read_umass_trace(tmp_path / "m.dat")


def test_a_directory_is_named(tmp_path):
    with pytest.raises(InputError, match="expected a UMass memory trace.*; not a regular file"):
        read_umass_trace(tmp_path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_any_bytes_read_or_give_an_input_error(tmp_path, data):
    (tmp_path / "m.dat").write_bytes(data)
    try:
        t = read_umass_trace(tmp_path / "m.dat")
    except InputError as e:
        assert str(e).startswith(f"{tmp_path / 'm.dat'}")
    else:  # what it read is the file: the header's lines, then whole hashes
        assert t.hashes_at + 4 * len(t.hashes) == len(data) and t.header


def test_inspect_detects_and_describes(tmp_path):
    path = trace(tmp_path / "m.dat", [A, Z, Z, B])
    assert detect(path) == "umass"
    line = inspect(path)
    assert line == (f"{path}: umass, 4 pages (0.0 MiB) after a header of 2 lines ('OS: Linux 2.6.18'), "
                    "3 distinct contents, hash 32-bit (most frequent, taken as the zero page: 50.0% of pages)")


def manifest(tmp_path, hash_kind="32-bit", kind="umass"):
    trace(tmp_path / "s0.dat", [A, Z, Z, B] + [Z] * 252)  # 1 MiB
    trace(tmp_path / "s1.dat", [B, Z, Z, A] + [A] * 252)
    d = {"id": "srv", "workload": "server", "memory_mib": 1,
         "snapshots": [{"time_s": 1800, kind: "s0.dat"}, {"time_s": 3600, kind: "s1.dat"}]}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(
        {"format": "xpipe-capture/1", "hash_kind": hash_kind, "synthetic": True, "domains": [d]}))
    return tmp_path / "m.yaml"


def test_a_memory_only_domain_normalises(tmp_path):
    from xpipe.normalise import normalise_frames

    domain = load_manifest(manifest(tmp_path)).domains[0]
    assert domain.reads is None and domain.disk is None
    frames = normalise_frames(domain).partition_by("snapshot", as_dict=True)
    assert frames[(0,)]["hash"].to_list() == [A, ZERO_HASH, ZERO_HASH, B] + [ZERO_HASH] * 252
    # in s1, A is the most frequent hash: each file's own most frequent stands for the zero page
    assert frames[(1,)]["hash"].to_list() == [B, Z, Z, ZERO_HASH] + [ZERO_HASH] * 252


@pytest.mark.parametrize("hash_kind, kind, message", [
    ("xxh3-64", "umass", r"snapshots\[0\]\.umass: expected one of pages, pmemsave, elf, kdump, xen, delta: the bundle's "
                         "hash_kind is xxh3-64"),
    ("32-bit", "pmemsave", r"snapshots\[0\]\.pmemsave: expected one of umass: the bundle's hash_kind is 32-bit"),
])
def test_hash_kinds_are_never_mixed(tmp_path, hash_kind, kind, message):
    with pytest.raises(InputError, match=message):
        load_manifest(manifest(tmp_path, hash_kind, kind))


def test_the_synthetic_umass_sample_is_what_its_generator_writes(tmp_path):
    from xpipe.synthetic import write_synthetic_umass_bundle

    data = Path(__file__).resolve().parents[1] / "data/umass-synthetic"
    write_synthetic_umass_bundle(tmp_path)
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(p.relative_to(data) for p in data.rglob("*") if p.is_file())
    for name in written:
        assert (tmp_path / name).read_bytes() == (data / name).read_bytes(), name
    m = load_manifest(data / "manifest.yaml")
    assert m.synthetic and m.hash_kind == "32-bit"  # labelled SYNTHETIC wherever it goes
