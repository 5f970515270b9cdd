"""FIU I/O-dedup traces: I/O-only domains, MD5 contents, counted by hand.

The lines below are written in FIU's published format (the first is the
sample line of the trace set's description); they are not from a real trace.
"""

import gzip

import numpy as np
import pytest
import yaml

from xpipe.errors import InputError
from xpipe.hashing import ZERO_HASH
from xpipe.normalise import normalise_requests
from xpipe.readers.fiu import digest64, read_fiu
from xpipe.readers.manifest import load_manifest

Z = "620f0b67a91f7f74151bc5be745b7110"  # the most frequent digest: taken as the zero block
A, B, C = "56f11b711d91a065a2b6458eca924523", "00112233445566778899aabbccddeeff", "ffeeddccbbaa99887766554433221100"
LINES = [
    f"89968195792462 20782 gzip 283193184 8 R 6 0 {A}",  # ts 89968.195792462 s
    f"89968195792562 20782 gzip 8 8 R 6 0 {Z}",
    f"89968195793462 30000 httpd 16 8 W 6 0 {B}",        # a write: not a read
    f"89968195794462 30000 httpd 16 8 R 6 0 {B}",        # reads the written content
    f"89968195795462 30001 httpd 0 8 R 8 16 {Z}",        # another device
    f"89968195796462 30001 httpd 24 8 R 8 16 {C}",
    f"89968195797462 30001 httpd 32 8 R 8 16 {Z}",
]


def bundle(tmp_path, lines=LINES, **reads):
    (tmp_path / "t.txt.gz").write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    domain = {"id": "d", "workload": "web", "reads": {"fiu": "t.txt.gz", **reads}}
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(
        {"format": "xpipe-capture/1", "hash_kind": "md5", "synthetic": True, "domains": [domain]}))
    return load_manifest(tmp_path / "manifest.yaml")


def test_the_published_sample_line_reads(tmp_path):
    (tmp_path / "one.fiu").write_text(LINES[0] + "\n")
    tr = read_fiu(tmp_path / "one.fiu")
    assert (tr.time_s[0], tr.process[0], tr.sector[0], tr.sectors[0], tr.write[0], tr.device[0]) == \
        (89968.195792462, "gzip", 283193184, 8, False, "6:0")
    assert tr.digest[0] == int.from_bytes(bytes.fromhex(A)[:8], "little") == digest64(A.encode())


@pytest.mark.parametrize("select, want", [
    # device 6:0: three reads (the write skipped); times from the file's first request
    ({"device": "6:0"}, [(0.0, 283193184 * 512, A), (100e-9, 8 * 512, "zero"), (2000e-9, 16 * 512, B)]),
    ({"device": "8:16"}, [(3000e-9, 0, "zero"), (4000e-9, 24 * 512, C), (5000e-9, 32 * 512, "zero")]),
    ({"process": "gzip"}, [(0.0, 283193184 * 512, A), (100e-9, 8 * 512, "zero")]),
    ({"device": "8:16", "process": "httpd"}, [(3000e-9, 0, "zero"), (4000e-9, 24 * 512, C),
                                             (5000e-9, 32 * 512, "zero")]),
])
def test_a_domain_is_its_device_or_process_reads(tmp_path, select, want):
    m = bundle(tmp_path, **select)
    req = normalise_requests(m.domains[0], None)
    got = [(t, off, h) for t, off, h in zip(req["time_s"], req["offset"], req["hash"])]
    assert [(off) for _, off, _ in got] == [w[1] for w in want]
    assert np.allclose([t for t, _, _ in got], [w[0] for w in want], atol=1e-12)
    assert [h for _, _, h in got] == [ZERO_HASH if w[2] == "zero" else digest64(w[2].encode()) for w in want]
    assert set(req["bytes"]) == {4096}


@pytest.mark.parametrize("line, message", [
    ("89968195792462 20782 gzip 283193184 8 X 6 0 " + A, "line 2: expected 'ts_ns pid process lba size R|W"),
    ("89968195792462 20782 gzip 283193184 8 R 6 0 " + A[:-1], "line 2: expected"),
    ("89968195792462 20782 gzip -5 8 R 6 0 " + A, "line 2: expected"),
    ("89968195792462 20782 gzip 5 0 R 6 0 " + A, "line 2: expected .* a size of 1 or more sectors"),
])
def test_a_bad_line_is_named(tmp_path, line, message):
    (tmp_path / "t.fiu").write_text(LINES[0] + "\n" + line + "\n")
    with pytest.raises(InputError, match=message):
        read_fiu(tmp_path / "t.fiu")


def test_per_512_byte_digests_make_pages(tmp_path):
    """The homes variant, one digest per sector: eight consecutive reads of a page's sectors are
    one page read; a part of a page is a read of a content nothing else has."""
    s = [f"{i:032x}" for i in range(1, 9)]  # eight sector digests
    lines = [f"{1000 + k} 1 tar {16 + k} 1 R 6 0 {s[k]}" for k in range(8)]  # page 2, whole
    lines += [f"{2000 + k} 1 tar {40 + k} 1 R 6 0 {s[k]}" for k in range(8)]  # page 5: same content
    lines += [f"{3000 + k} 1 tar {64 + k} 1 R 6 0 {Z}" for k in range(8)]  # page 8: zero sectors
    lines += [f"{3900 + k} 2 cp {64 + k} 1 W 6 0 {Z}" for k in range(8)]  # writes: not reads
    lines += [f"{4000 + k} 1 tar {8 + k} 1 R 6 0 {s[k]}" for k in range(3)]  # page 1: part
    lines += [f"{5000 + k} 1 tar {8 + k} 1 R 6 0 {s[k]}" for k in range(3)]  # again: part
    lines += [f"{6000 + k} 1 tar {64 + k} 1 R 6 0 {Z}" for k in range(8)]  # page 8 again
    req = normalise_requests(bundle(tmp_path, lines=lines).domains[0], None)
    assert [round(t * 1e9) for t in req["time_s"]] == [0, 1000, 2000, 3000, 4000, 5000]  # ns after the first
    assert req["offset"].to_list() == [2 * 4096, 5 * 4096, 8 * 4096, 4096, 4096, 8 * 4096]
    assert req["bytes"].to_list() == [4096] * 6
    h = req["hash"].to_list()
    assert h[0] == h[1] and h[2] == h[5] == ZERO_HASH  # Z: the most frequent sector digest
    assert len({h[0], h[2], h[3], h[4]}) == 4  # each part is a content of its own


def test_per_512_byte_and_4_kib_digests_in_one_domain_are_refused(tmp_path):
    m = bundle(tmp_path, lines=LINES + [f"89968195799462 1 tar 40 1 R 6 0 {A}"], device="6:0")
    with pytest.raises(InputError, match=r"line 8: expected every read of one size, 8 sectors .* or 1 .* "
                                         r"\(line 1: 8 sectors\); found 1"):
        normalise_requests(m.domains[0], None)


def test_no_reads_of_the_selected_device_is_an_error(tmp_path):
    m = bundle(tmp_path, device="9:9")
    with pytest.raises(InputError, match="expected read requests of device 9:9; found none"):
        normalise_requests(m.domains[0], None)


@pytest.mark.parametrize("change, message", [
    ({"hash_kind": "xxh3-64"}, r"domains\[0\].reads: expected a qemu-blk trace: the bundle's hash_kind is xxh3-64"),
    ({"hash_kind": "32-bit"}, r"domains\[0\].reads: expected no reads: the bundle's hash_kind is 32-bit"),
    ({"hash_kind": "sha1"}, "hash_kind: expected one of xxh3-64, md5, 32-bit"),
])
def test_hash_kinds_are_never_mixed(tmp_path, change, message):
    bundle(tmp_path)
    raw = yaml.safe_load((tmp_path / "manifest.yaml").read_text()) | change
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match=message):
        load_manifest(tmp_path / "manifest.yaml")


def test_memory_snapshots_are_not_md5(tmp_path):
    bundle(tmp_path)
    raw = yaml.safe_load((tmp_path / "manifest.yaml").read_text())
    (tmp_path / "s0.xxh").write_bytes(b"\0" * 8)
    raw["domains"][0] |= {"memory_mib": 1, "snapshots": [{"time_s": 1, "pages": "s0.xxh"}]}
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match=r"domains\[0\].snapshots: expected no memory snapshots: the bundle's hash_kind is md5"):
        load_manifest(tmp_path / "manifest.yaml")


def test_the_synthetic_fiu_sample_is_what_its_generator_writes(tmp_path):
    from pathlib import Path

    from xpipe.synthetic import write_synthetic_fiu_bundle

    data = Path(__file__).resolve().parents[1] / "data/fiu-synthetic"
    write_synthetic_fiu_bundle(tmp_path)
    for name in ("manifest.yaml", "trace.txt.gz"):
        assert (tmp_path / name).read_bytes() == (data / name).read_bytes(), name
    assert load_manifest(data / "manifest.yaml").synthetic  # labelled SYNTHETIC wherever it goes
