"""Page-delta files (`delta` snapshots): the frames that changed since a domain's previous
snapshot. Round trips, the chain through stage 1, every malformed file with its one-line
error, and fuzzing of a valid file."""

from __future__ import annotations

import gzip
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xpipe.bundle import (
    DELTA_HEADER,
    DELTA_MAGIC,
    delta_bytes,
    u64_bytes,
    write_bytes,
    write_delta,
    write_pages,
    write_u64,
)
from xpipe.errors import InputError
from xpipe.inspect import detect, inspect
from xpipe.normalise import normalise_frames
from xpipe.readers.compact import read_page_hashes
from xpipe.readers.delta import apply_delta, read_delta, read_delta_snapshot
from xpipe.readers.manifest import load_manifest

# As in tests/test_hostile.py: a failing hypothesis example must not end the session in a
# warning raised by importing its patch suggester.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:
        pass

FRAMES = 512  # 2 MiB: memory_mib 2 in a manifest


def snapshots(n: int = 4, seed: int = 1) -> list[np.ndarray]:
    """``n`` page-hash arrays of FRAMES frames, each a few frames off the one before (with
    zero pages, repeated contents, a frame changed back, and one unchanged snapshot)."""
    rng = np.random.default_rng(seed)
    first = rng.integers(0, 2**64, FRAMES, dtype=np.uint64)
    first[:100] = 0  # zero pages
    out = [first]
    for k in range(1, n):
        h = out[-1].copy()
        if k != 2:  # snapshot 2 is unchanged: an empty delta
            idx = rng.choice(FRAMES, 20, replace=False)
            h[idx] = rng.integers(0, 2**64, 20, dtype=np.uint64)
            h[idx[:3]] = first[idx[:3]]  # some frames change back
            h[FRAMES - 1] = np.uint64(2**64 - 1)  # the last frame and the top bit
        out.append(h)
    return out


def delta_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def prev(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(len(h), dtype=np.int64), h


# -- round trips ---------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_round_trip(tmp_path, gz):
    snaps = snapshots()
    for k in range(1, len(snaps)):
        path = write_delta(tmp_path / f"s{k}.xxhd", snaps[k - 1], snaps[k], gz)
        assert path.name == f"s{k}.xxhd" + (".gz" if gz else "")
        gfn, h = read_delta_snapshot(path, prev(snaps[k - 1]))
        assert np.array_equal(gfn, np.arange(FRAMES)) and gfn.dtype == np.int64
        assert h.dtype == np.uint64 and np.array_equal(h, snaps[k])
        d = read_delta(path)
        assert d.frames == FRAMES
        assert np.array_equal(d.gfn, np.flatnonzero(snaps[k - 1] != snaps[k]))


def test_layout_by_hand(tmp_path):
    """The documented layout, written out byte by byte (docs/capture-bundle.md)."""
    a = np.array([5, 6, 7, 8], dtype=np.uint64)
    b = np.array([5, 9, 7, 2**64 - 1], dtype=np.uint64)
    data = delta_bytes(a, b)
    want = (b"XPDELTA\0" + struct.pack("<II", 1, zlib.crc32(u64_bytes(a))) + struct.pack("<QQ", 4, 2)
            + struct.pack("<II", zlib.crc32(u64_bytes(b)), 0)
            + struct.pack("<II", 1, 3) + struct.pack("<QQ", 9, 2**64 - 1))
    assert data == want and len(data) == 40 + 12 * 2
    _, h = read_delta_snapshot(delta_file(tmp_path / "d.xxhd", data), prev(a))
    assert h.tolist() == b.tolist()


def test_empty_delta_and_empty_snapshot(tmp_path):
    a = np.arange(8, dtype=np.uint64)
    p = delta_file(tmp_path / "same.xxhd", delta_bytes(a, a))
    assert p.stat().st_size == DELTA_HEADER.size
    assert np.array_equal(read_delta_snapshot(p, prev(a))[1], a)
    e = np.zeros(0, dtype=np.uint64)
    assert len(read_delta_snapshot(delta_file(tmp_path / "e.xxhd", delta_bytes(e, e)), prev(e))[1]) == 0


def test_write_pages_takes_the_smaller_file(tmp_path):
    a, b = snapshots(2)
    kind, path = write_pages(tmp_path / "s0.xxh", a, None, True)
    assert (kind, path.name) == ("pages", "s0.xxh.gz")
    kind, path = write_pages(tmp_path / "s1.xxh", b, a, True)  # 20 of 512 frames changed
    assert (kind, path.name) == ("delta", "s1.xxhd.gz")
    assert np.array_equal(read_delta_snapshot(path, prev(a))[1], b)
    everything = a + np.uint64(1)  # every frame changed: the full file is smaller
    kind, path = write_pages(tmp_path / "s2.xxh", everything, b, False)
    assert (kind, path.name) == ("pages", "s2.xxh")
    assert np.array_equal(read_page_hashes(path)[1], everything)


def test_writer_refuses_snapshots_of_different_frames():
    with pytest.raises(ValueError, match="same frames"):
        delta_bytes(np.zeros(4, np.uint64), np.zeros(5, np.uint64))


# -- the chain through stage 1 ---------------------------------------------------


def bundle(folder: Path, snaps: list[np.ndarray], kinds: list[str]) -> Path:
    """A one-domain bundle of ``snaps``, each stored as the kind of ``kinds`` (pages or delta)."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for k, (h, kind) in enumerate(zip(snaps, kinds)):
        if kind == "pages":
            name = f"s{k}.xxh"
            write_u64(folder / name, h)
        else:
            name = f"s{k}.xxhd.gz"
            write_bytes(folder / name, delta_bytes(snaps[k - 1], h))
        flags = np.full(len(h), k, dtype=np.uint64)
        write_u64(folder / f"s{k}.kpf", flags)
        entries.append({"time_s": 10.0 * (k + 1), kind: name, "kpageflags": f"s{k}.kpf"})
    manifest = {"format": "xpipe-capture/1", "domains": [
        {"id": "vm-1", "workload": "w", "memory_mib": len(snaps[0]) // 256, "snapshots": entries}]}
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return path


def test_chain_gives_the_frames_table_of_full_files(tmp_path):
    snaps = snapshots(5)
    full = load_manifest(bundle(tmp_path / "full", snaps, ["pages"] * 5)).domains[0]
    mixed = load_manifest(bundle(tmp_path / "delta", snaps, ["pages", "delta", "delta", "pages", "delta"]))
    assert [s.kind for s in mixed.domains[0].snapshots] == ["pages", "delta", "delta", "pages", "delta"]
    want, got = normalise_frames(full), normalise_frames(mixed.domains[0])
    assert len(want) == 5 * FRAMES
    assert got.equals(want)
    assert got.filter(pl.col("snapshot") == 4)["hash"].to_numpy().tolist() == snaps[4].tolist()


@pytest.mark.parametrize("every, kept", [(1, [0, 1, 2, 3, 4]), (2, [0, 2, 4]), (3, [0, 3, 4]), (9, [0, 4])])
def test_keep_every_passes_on_every_kth_snapshot_and_the_last(tmp_path, every, kept):
    snaps = snapshots(5)
    domain = load_manifest(bundle(tmp_path, snaps, ["pages"] + ["delta"] * 4)).domains[0]
    got = normalise_frames(domain, keep_every=every)
    # numbered 0.. in time order, each the snapshot the whole chain of deltas gives
    assert got["snapshot"].unique().sort().to_list() == list(range(len(kept)))
    for i, k in enumerate(kept):
        one = got.filter(pl.col("snapshot") == i)
        assert one["time_s"].unique().to_list() == [10.0 * (k + 1)]
        assert one["hash"].to_numpy().tolist() == snaps[k].tolist()
        assert one["kpageflags"].unique().to_list() == [k]


def test_manifest_refuses_a_delta_first(tmp_path):
    snaps = snapshots(2)
    path = bundle(tmp_path, snaps, ["pages", "delta"])
    m = yaml.safe_load(path.read_text())
    m["domains"][0]["snapshots"] = m["domains"][0]["snapshots"][1:]
    path.write_text(yaml.safe_dump(m))
    with pytest.raises(InputError, match=re.escape(
            f"{path}, domains[0].snapshots[0].delta: expected a full snapshot first: a delta holds only "
            "the frames changed since the domain's previous snapshot")):
        load_manifest(path)


def test_snapshots_out_of_order_are_caught(tmp_path):
    """A delta applied to another snapshot than the one it was made from: the CRC says so."""
    snaps = snapshots(3)
    path = bundle(tmp_path, snaps, ["pages", "delta", "delta"])
    m = yaml.safe_load(path.read_text())
    s = m["domains"][0]["snapshots"]
    s[1]["delta"], s[2]["delta"] = s[2]["delta"], s[1]["delta"]
    path.write_text(yaml.safe_dump(m))
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 's2.xxhd.gz'}, offset 12: expected the "
                                                   "CRC-32 of the previous snapshot's page hashes")):
        normalise_frames(load_manifest(path).domains[0])


# -- malformed files: one line each, naming the file, the offset, what was expected ----------


A = np.arange(1, 9, dtype=np.uint64)
B = A.copy()
B[[1, 5]] = [100, 200]
VALID = delta_bytes(A, B)  # 8 frames, 2 changed: 40 + 24 bytes


def patched(offset: int, fmt: str, *values) -> bytes:
    b = bytearray(VALID)
    struct.pack_into(fmt, b, offset, *values)
    return bytes(b)


MALFORMED = [
    (b"", "offset 0: expected a page-delta file (magic b'XPDELTA\\x00'), found b''"),
    (b"XPDELTA\0"[:5], "offset 0: expected a page-delta file (magic b'XPDELTA\\x00'), found b'XPDEL'"),
    (b"\x1f\x8b" + VALID[2:], "offset 0: expected a page-delta file (magic b'XPDELTA\\x00'), found "),
    (u64_bytes(A), "offset 0: expected a page-delta file (magic b'XPDELTA\\x00'), found b'\\x01\\x00"),
    (VALID[:8], "offset 8: expected a 40-byte page-delta header, the file ends after 8 bytes"),
    (VALID[:39], "offset 39: expected a 40-byte page-delta header, the file ends after 39 bytes"),
    (patched(8, "<I", 2), "offset 8: expected page-delta version 1, found 2"),
    (patched(36, "<I", 7), "offset 36: expected a zero word, found 0x7"),
    (patched(16, "<Q", 2**32 + 1),
     "offset 16: expected at most 4294967296 frames (u32 frame numbers), found 4294967297"),
    (patched(24, "<Q", 9), "offset 24: expected at most the 8 frames to have changed, found 9"),
    (patched(24, "<Q", 3), "offset 64: expected 76 bytes (40-byte header + 12 x 3 changed frames), found 64"),
    (patched(24, "<Q", 1), "offset 52: expected 52 bytes (40-byte header + 12 x 1 changed frames), found 64"),
    (VALID[:-1], "offset 63: expected 64 bytes (40-byte header + 12 x 2 changed frames), found 63"),
    (VALID + b"\0", "offset 64: expected 64 bytes (40-byte header + 12 x 2 changed frames), found 65"),
    (patched(44, "<I", 8), "offset 44: expected a frame number below 8, found 8"),
    (patched(40, "<I", 2**32 - 1), "offset 40: expected a frame number below 8, found 4294967295"),
    (patched(44, "<I", 1), "offset 44: expected frame numbers in strictly increasing order, found 1 after 1"),
    (patched(40, "<II", 5, 1), "offset 44: expected frame numbers in strictly increasing order, found 1 after 5"),
]


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("data, message", MALFORMED)
def test_malformed(tmp_path, data, message, gz):
    path = tmp_path / ("d.xxhd.gz" if gz else "d.xxhd")
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    with pytest.raises(InputError) as e:
        read_delta_snapshot(path, prev(A))
    assert str(e.value).startswith(f"{path}, {message}")
    assert "\n" not in str(e.value)


def test_a_huge_declared_count_allocates_nothing(tmp_path):
    """2**32 frames all changed, in a file of 64 bytes: refused from the length alone."""
    data = patched(16, "<QQ", 2**32, 2**32)
    with pytest.raises(InputError, match=re.escape(
            "offset 64: expected 51539607592 bytes (40-byte header + 12 x 4294967296 changed frames), found 64")):
        read_delta(delta_file(tmp_path / "d.xxhd", data))


def test_frame_count_differs_from_the_previous_snapshot(tmp_path):
    path = delta_file(tmp_path / "d.xxhd", VALID)
    with pytest.raises(InputError, match=re.escape(
            f"{path}, offset 16: expected the previous snapshot's frame count 9, found 8")):
        read_delta_snapshot(path, prev(np.arange(9, dtype=np.uint64)))


def test_no_previous_snapshot(tmp_path):
    path = delta_file(tmp_path / "d.xxhd", VALID)
    with pytest.raises(InputError, match=re.escape(
            f"{path}, offset 0: expected a full snapshot before this delta: a domain's first snapshot must "
            "be a full one (pages), not a delta")):
        read_delta_snapshot(path, None)


def test_delta_names_frames_by_index_in_frame_order(tmp_path):
    """A guest with RAM above 4 GiB has frames 0..N-1 no more: a delta's frame numbers are
    indexes into the previous snapshot's frames, in order, which must increase."""
    path = delta_file(tmp_path / "d.xxhd", VALID)
    gfn = np.concatenate([np.arange(4), 0x100000 + np.arange(4)])
    got_gfn, got = apply_delta(path, read_delta(path), (gfn, A))
    assert np.array_equal(got_gfn, gfn)
    assert np.array_equal(got, read_delta_snapshot(path, prev(A))[1])
    with pytest.raises(InputError, match=re.escape(
            f"{path}, offset 16: expected a previous snapshot of increasing frame numbers, one hash each")):
        apply_delta(path, read_delta(path), (gfn[::-1].copy(), A))


def test_another_previous_snapshot(tmp_path):
    path = delta_file(tmp_path / "d.xxhd", VALID)
    other = A.copy()
    other[0] = 99
    with pytest.raises(InputError, match=re.escape(
            f"{path}, offset 12: expected the CRC-32 of the previous snapshot's page hashes, "
            f"{zlib.crc32(u64_bytes(other)):#010x}, found {zlib.crc32(u64_bytes(A)):#010x} "
            "(a delta of another snapshot, or snapshots out of order?)")):
        read_delta_snapshot(path, prev(other))


def test_a_changed_hash_is_caught(tmp_path):
    data = bytearray(VALID)
    data[-1] ^= 0x10  # the last new hash
    path = delta_file(tmp_path / "d.xxhd", bytes(data))
    with pytest.raises(InputError, match=re.escape(f"{path}, offset 32: expected the CRC-32 of the snapshot "
                                                   "the delta gives, ")):
        read_delta_snapshot(path, prev(A))


@pytest.mark.parametrize("damage", ["corrupt", "truncated", "crc", "not gzip"])
def test_gzip_damage(tmp_path, damage):
    gz = bytearray(gzip.compress(VALID, mtime=0))
    if damage == "corrupt":
        gz[12:16] = b"\xff\xff\xff\xff"
    elif damage == "truncated":
        gz = gz[:-6]
    elif damage == "crc":
        gz[-8] ^= 0xFF
    else:
        gz = bytearray(VALID)
    path = delta_file(tmp_path / "d.xxhd.gz", bytes(gz))
    with pytest.raises(InputError, match=re.escape(f"{path}: expected a whole gzip file (")):
        read_delta_snapshot(path, prev(A))


# -- xpipe inspect -------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_inspect(tmp_path, gz):
    path = write_delta(tmp_path / "s1.xxhd", A, B, gz)
    assert detect(path) == "delta"
    assert inspect(path) == (f"{path}: delta, 2 of 8 frames changed (25.0%), 2 distinct new contents, hash "
                             f"xxh3-64; the changes to the snapshot before it (page hashes with CRC-32 "
                             f"{zlib.crc32(u64_bytes(A)):#010x})")
    bad = delta_file(tmp_path / "bad.xxhd", VALID[:50])
    with pytest.raises(InputError, match=re.escape(f"{bad}, offset 50: expected 64 bytes")):
        inspect(bad)


# -- fuzz: random bytes, truncations and bit flips of a valid file --------------------


def mutations(valid: bytes):
    """Random bytes, the valid file cut short, with bits flipped, bytes overwritten or inserted
    (as tests/test_hostile.py)."""
    spots = st.integers(0, len(valid) - 1)

    def flipped(fs):
        b = bytearray(valid)
        for i, bit in fs:
            b[i] ^= 1 << bit
        return bytes(b)

    def edited(edits):
        b = bytearray(valid)
        for i, v in edits:
            b[i] = v
        return bytes(b)

    return st.one_of(
        st.binary(max_size=256),
        st.just(DELTA_MAGIC).flatmap(lambda m: st.binary(max_size=200).map(lambda rest: m + rest)),
        st.integers(0, len(valid)).map(lambda n: valid[:n]),
        st.lists(st.tuples(spots, st.integers(0, 7)), min_size=1, max_size=8).map(flipped),
        st.lists(st.tuples(spots, st.integers(0, 255)), min_size=1, max_size=4).map(edited),
        st.tuples(st.integers(0, len(valid)), st.binary(min_size=1, max_size=16)).map(
            lambda a: valid[:a[0]] + a[1] + valid[a[0]:]),
    )


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-delta")


FUZZ_A, FUZZ_B = snapshots(2, seed=7)[0][:64], snapshots(2, seed=7)[1][:64]
FUZZ_B = FUZZ_B.copy()
FUZZ_B[[3, 17, 40, 63]] = [1, 2, 3, 4]
FUZZ_VALID = delta_bytes(FUZZ_A, FUZZ_B)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data(), gz=st.booleans())
def test_fuzz_delta_reader(fuzz_dir, data, gz):
    """Whatever the bytes: the exact snapshot the valid file gives, or one InputError line
    naming the file. Never a traceback, never a wrong snapshot."""
    content = data.draw(mutations(FUZZ_VALID))
    path = fuzz_dir / ("f.xxhd.gz" if gz else "f.xxhd")
    path.write_bytes(gzip.compress(content, mtime=0) if gz else content)
    try:
        gfn, h = read_delta_snapshot(path, prev(FUZZ_A))
    except InputError as e:
        assert str(e).startswith(f"{path}") and "\n" not in str(e)
        return
    assert np.array_equal(gfn, np.arange(len(FUZZ_A))) and np.array_equal(h, FUZZ_B)
