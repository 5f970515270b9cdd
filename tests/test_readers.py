"""Stage 1 readers: every format read exactly, every bad input named."""

import gzip

import numpy as np
import pytest
import xxhash
import yaml
from elfcore import elf_core

from xpipe.bundle import write_u64
from xpipe.errors import InputError
from xpipe.hashing import PAGE_SIZE, hash_pages
from xpipe.normalise import domains_table, ksm_at_capture_table
from xpipe.readers.blktrace import read_blk_trace
from xpipe.readers.compact import read_u64
from xpipe.readers.manifest import load_manifest
from xpipe.readers.memdump import read_elf_core, read_pmemsave
from xpipe.readers.registry import SNAPSHOT_READERS


def pages(*fills):
    """Pages whose every byte is the given value."""
    return b"".join(bytes([f]) * PAGE_SIZE for f in fills)


def h(fill):
    return xxhash.xxh3_64_intdigest(bytes([fill]) * PAGE_SIZE)


def test_compact_round_trip_plain_and_gzip(tmp_path):
    v = np.array([1, 2**64 - 1, 0], dtype=np.uint64)
    for name in ("a.xxh", "a.xxh.gz"):
        write_u64(tmp_path / name, v)
        assert read_u64(tmp_path / name).tolist() == v.tolist()
    assert gzip.decompress((tmp_path / "a.xxh.gz").read_bytes()) == v.astype("<u8").tobytes()


def test_compact_trailing_bytes_named(tmp_path):
    (tmp_path / "bad.xxh").write_bytes(b"\0" * 20)
    with pytest.raises(InputError, match=r"bad\.xxh, offset 16: .*4 trailing bytes"):
        read_u64(tmp_path / "bad.xxh")


def test_pmemsave(tmp_path):
    (tmp_path / "m.raw").write_bytes(pages(0, 7, 7))
    gfn, hashes = read_pmemsave(tmp_path / "m.raw")
    assert gfn.tolist() == [0, 1, 2] and hashes.tolist() == [h(0), h(7), h(7)]
    (tmp_path / "short.raw").write_bytes(pages(1) + b"x")
    with pytest.raises(InputError, match="short.raw, offset 4096: expected a whole number"):
        read_pmemsave(tmp_path / "short.raw")


def test_elf_core_maps_guest_physical_addresses(tmp_path):
    # RAM below and above a hole, as QEMU writes it for guests with a PCI hole.
    (tmp_path / "c.elf").write_bytes(elf_core([(0x100000 * 16, pages(3)), (0, pages(1, 2))]))
    gfn, hashes = read_elf_core(tmp_path / "c.elf")
    assert gfn.tolist() == [0, 1, 4096]
    assert hashes.tolist() == [h(1), h(2), h(3)]


def test_elf_core_bad_magic(tmp_path):
    (tmp_path / "x.elf").write_bytes(b"\0" * 4096)
    with pytest.raises(InputError, match="x.elf, offset 0: expected an ELF core"):
        read_elf_core(tmp_path / "x.elf")


LINE = "4242@{sec}.{usec:06d}:blk_co_preadv blk 0x55 bs 0x66 offset {off} bytes {n} flags 0x0\n"


def test_blk_trace_times_offsets_and_other_events(tmp_path):
    log = (LINE.format(sec=100, usec=500000, off=0, n=512)
           + "4242@100.600000:blk_co_pwritev blk 0x55 bs 0x66 offset 0 bytes 4096 flags 0x0\n"
           + LINE.format(sec=101, usec=0, off=8192, n=8192))
    (tmp_path / "r.log").write_text(log)
    t, off, n = read_blk_trace(tmp_path / "r.log", start_epoch_s=100.0, disk_bytes=1 << 20)
    assert t.tolist() == pytest.approx([0.5, 1.0])
    assert off.tolist() == [0, 8192] and n.tolist() == [512, 8192]


def test_blk_trace_errors_name_the_line(tmp_path):
    (tmp_path / "r.log").write_text(LINE.format(sec=1, usec=0, off=0, n=4096)
                                    + "4242@1.000001:blk_co_preadv blk 0x55 offset zero\n")
    with pytest.raises(InputError, match=r"r.log, line 2: expected 'PID@SEC.USEC:blk_co_preadv"):
        read_blk_trace(tmp_path / "r.log", 0.0)
    (tmp_path / "big.log").write_text(LINE.format(sec=1, usec=0, off=1 << 20, n=4096))
    with pytest.raises(InputError, match="big.log, line 1: expected a read inside the 1048576-byte"):
        read_blk_trace(tmp_path / "big.log", 0.0, disk_bytes=1 << 20)


def write_manifest(tmp_path, **domain):
    (tmp_path / "s0.xxh").write_bytes(b"\0" * 8 * 256)
    d = {"id": "a", "workload": "idle", "memory_mib": 1,
         "snapshots": [{"time_s": 1, "pages": "s0.xxh"}], **domain}
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump({"format": "xpipe-capture/1", "domains": [d]}))
    return tmp_path / "manifest.yaml"


def test_manifest_loads(tmp_path):
    m = load_manifest(write_manifest(tmp_path))
    assert [d.id for d in m.domains] == ["a"] and m.domains[0].snapshots[0].kind == "pages"
    assert m.synthetic is False


@pytest.mark.parametrize("change, message", [
    ({"memory_mib": "lots"}, r"domains\[0\].memory_mib: expected int"),
    ({"snapshots": [{"time_s": 1, "pages": "missing.xxh"}]},
     r"domains\[0\].snapshots\[0\].pages: file 'missing.xxh' does not exist"),
    ({"snapshots": [{"time_s": 2, "pages": "s0.xxh"}, {"time_s": 1, "pages": "s0.xxh"}]},
     "strictly increasing time_s"),
    ({"disk": "nope"}, r"domains\[0\].disk: expected one of the disks"),
    # the kinds a manifest accepts are the reader registry's
    ({"snapshots": [{"time_s": 1, "vmcore": "s0.xxh"}]},
     r"domains\[0\].snapshots\[0\].vmcore: unknown key \(known: time_s, "
     + ", ".join(SNAPSHOT_READERS)),
    ({"snapshots": [{"time_s": 1}]},
     r"domains\[0\].snapshots\[0\]: expected exactly one of " + ", ".join(SNAPSHOT_READERS)),
    ({"snapshots": [{"time_s": 1, "pages": "s0.xxh", "pmemsave": "s0.xxh"}]},
     r"domains\[0\].snapshots\[0\]: expected exactly one of " + ", ".join(SNAPSHOT_READERS)),
])
def test_manifest_errors_name_the_key(tmp_path, change, message):
    with pytest.raises(InputError, match=message):
        load_manifest(write_manifest(tmp_path, **change))


def test_manifest_not_yaml(tmp_path):
    (tmp_path / "manifest.yaml").write_text("format: [unclosed\n")
    with pytest.raises(InputError, match=r"manifest.yaml, line \d+: expected YAML"):
        load_manifest(tmp_path / "manifest.yaml")


def test_normalise_frames_from_every_snapshot_kind(tmp_path):
    from xpipe.normalise import normalise_frames

    mem = pages(*([0] * 250 + [1, 2, 3, 4, 5, 6]))  # 1 MiB: 256 frames
    (tmp_path / "s0.raw").write_bytes(mem)
    (tmp_path / "s1.elf").write_bytes(elf_core([(0, mem)]))
    write_u64(tmp_path / "s2.xxh.gz", hash_pages(mem))
    kpf = np.full(256, 1 << 20, dtype=np.uint64)  # frames past the guest's max_pfn: NOPAGE
    kpf[:200] = 1 << 10
    write_u64(tmp_path / "s2.kpf", kpf)
    d = {"id": "a", "workload": "idle", "memory_mib": 1, "snapshots": [
        {"time_s": 1, "pmemsave": "s0.raw"}, {"time_s": 2, "elf": "s1.elf"},
        {"time_s": 3, "pages": "s2.xxh.gz", "kpageflags": "s2.kpf"}]}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"format": "xpipe-capture/1", "domains": [d]}))
    frames = normalise_frames(load_manifest(tmp_path / "m.yaml").domains[0])
    per_snap = frames.partition_by("snapshot", as_dict=True)
    want = hash_pages(mem).tolist()
    assert [per_snap[(k,)]["hash"].to_list() for k in range(3)] == [want] * 3
    flags = per_snap[(2,)]["kpageflags"]
    assert flags.to_list() == kpf.tolist() and flags.null_count() == 0


def test_normalise_frames_wrong_size(tmp_path):
    from xpipe.normalise import normalise_frames

    (tmp_path / "s0.raw").write_bytes(pages(0, 0))
    d = {"id": "a", "workload": "idle", "memory_mib": 1, "snapshots": [{"time_s": 1, "pmemsave": "s0.raw"}]}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"format": "xpipe-capture/1", "domains": [d]}))
    with pytest.raises(InputError, match=r"s0.raw: expected 256 page frames \(1 MiB\), found 2"):
        normalise_frames(load_manifest(tmp_path / "m.yaml").domains[0])


def test_normalise_disk_from_block_hashes_or_image(tmp_path):
    from xpipe.normalise import normalise_disk
    from xpipe.readers.manifest import Disk

    image = pages(0, 9, 9)
    (tmp_path / "d.img").write_bytes(image)
    write_u64(tmp_path / "d.blk.xxh.gz", hash_pages(image))
    want = [h(0), h(9), h(9)]
    for disk in (Disk("d", tmp_path / "d.blk.xxh.gz", None), Disk("d", None, tmp_path / "d.img")):
        blocks = normalise_disk(disk)
        assert blocks["block"].to_list() == [0, 1, 2] and blocks["hash"].to_list() == want
    (tmp_path / "odd.img").write_bytes(image + b"x")
    with pytest.raises(InputError, match=r"odd\.img, offset 12288: expected a disk image of whole 4096-byte"):
        normalise_disk(Disk("odd", None, tmp_path / "odd.img"))


KSM = {"guests": ["a", "b"], "pages_sharing": 90, "pages_shared": 4, "full_scans": 7, "backed_pages": 256,
       "predicted_sharing": 100, "predicted_sharing_all_mergeable": 101}


def ksm_snapshots(time_s, **ksm):
    return [{"time_s": t, "pages": "s0.xxh", "ksm": {**KSM, **ksm}} for t in time_s]


def ksm_bundle(tmp_path, sharing=(90, 90), guests=("a", "b")):
    (tmp_path / "s0.xxh").write_bytes(b"\0" * 8 * 256)
    domains = [{"id": i, "workload": "idle", "memory_mib": 1, "os": "debian trixie",
                "snapshots": ksm_snapshots([1, 2, 3], pages_sharing=n, guests=list(guests))}
               for i, n in zip(["a", "b"], sharing)]
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump({"format": "xpipe-capture/1", "domains": domains}))
    return tmp_path / "manifest.yaml"


def test_ksm_records_become_one_row_per_batch_and_time(tmp_path):
    m = load_manifest(ksm_bundle(tmp_path))
    k = m.domains[0].snapshots[1].ksm
    assert (k.guests, k.pages_sharing, k.predicted_sharing, k.settled) == (("a", "b"), 90, 100, False)
    # both guests of the batch carry the record; the table keeps one row per (time, batch)
    table = ksm_at_capture_table("c", m)
    assert table.select("time_s", "guests", "ksm_pages_sharing").rows() == [
        (1.0, "a,b", 90), (2.0, "a,b", 90), (3.0, "a,b", 90)]
    assert domains_table("c", m, {}, {})["os"].to_list() == ["debian trixie", "debian trixie"]
    # keep_every: the snapshots column counts what stage 1 passes on
    assert domains_table("c", m, {}, {}, keep_every=2)["snapshots"].to_list() == [2, 2]
    assert domains_table("c", m, {}, {}, keep_every=1)["snapshots"].to_list() == [3, 3]


def test_a_batch_whose_guests_disagree_on_ksm_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"domains\[1\].snapshots\[0\].ksm: expected the same KSM record as the "
                                         r"batch's other guests at 1 s \(a, b\)"):
        load_manifest(ksm_bundle(tmp_path, sharing=(90, 91)))
    with pytest.raises(InputError, match=r"domains\[0\].snapshots\[0\].ksm.guests: expected domains of this "
                                         r"bundle, got 'c'"):
        load_manifest(ksm_bundle(tmp_path, guests=("a", "b", "c")))


@pytest.mark.parametrize("ksm, message", [
    ({"pages_sharing": -1}, r"snapshots\[0\].ksm.pages_sharing: expected a count \(0 or more\), got -1"),
    ({"pages_sharing": 1.5}, r"snapshots\[0\].ksm.pages_sharing: expected int, got 1.5"),
    ({"guests": ["b"]}, r"snapshots\[0\].ksm.guests: expected the ids of the guests KSM ran on, 'a' among them"),
    ({"pages_sharng": 3}, r"snapshots\[0\].ksm.pages_sharng: unknown key; did you mean 'pages_sharing'\?"),
])
def test_ksm_record_errors_name_the_key(tmp_path, ksm, message):
    with pytest.raises(InputError, match=message):
        load_manifest(write_manifest(tmp_path, snapshots=ksm_snapshots([1], **ksm)))
