"""Xen `xl dump-core` files (xpipe.readers.xen): exact pages, every malformed file named.

There is no Xen here: the files are built in this module to Xen's format
description (xen docs/misc/dump-core-format.txt) and laid out as its writer lays
them out (tools/libs/guest/xg_core.c, xc_domain_dumpcore_via_callback), not
written by Xen. Expected hashes come from the xxhash package's
xxh3_64_intdigest, the project's reference.
"""

import re
import struct
from dataclasses import dataclass

import numpy as np
import pytest
import xxhash
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xpipe import hashing
from xpipe.errors import InputError
from xpipe.hashing import PAGE_SIZE, ZERO_HASH
from xpipe.readers.manifest import load_manifest
from xpipe.readers.registry import SNAPSHOT_READERS
from xpipe.readers.xen import read_xen_core

INVALID = (1 << 64) - 1  # XC_CORE_INVALID_PFN / XC_CORE_INVALID_GMFN, xg_core.h
PFN, P2M = ".xen_pfn", ".xen_p2m"
#: Stand-in for sizeof(vcpu_guest_context_any_t): .xen_prstatus is not read by xpipe.
CONTEXT_SIZE = 1024


@dataclass
class XenFile:
    """A built dump-core file and where its parts are, for tests that break one."""

    data: bytearray
    shdr: dict  # section name -> file offset of its section header
    offset: dict  # section name -> file offset of its bytes
    strtab: dict  # section name -> its sh_name (offset in .shstrtab)
    header_desc: int  # file offset of the XEN_ELFNOTE_DUMPCORE_HEADER descriptor
    version_desc: int  # file offset of the XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION descriptor

    def set_shdr(self, name, field, value):
        """Overwrite one field of a section header: name, type, offset or size."""
        fmt, at = {"name": ("<I", 0), "type": ("<I", 4), "offset": ("<Q", 24), "size": ("<Q", 32)}[field]
        struct.pack_into(fmt, self.data, self.shdr[name] + at, value)


def note(typ, desc):
    """One ELF note as xg_core.h's struct elfnote: namesz 4, descsz, type, "Xen\\0", descriptor."""
    return struct.pack("<III4s", 4, len(desc), typ, b"Xen\0") + desc


def xen_core(pages, pfns, *, tables=(PFN,), nr_pages=None, magic=None, page_size=PAGE_SIZE, version=(0, 1),
             nr_vcpus=1):
    """A dump-core file holding ``pages`` (bytes, 4 KiB each) for the guest frames ``pfns``.

    Built to docs/misc/dump-core-format.txt:
    * "Elf header": ELFCLASS64, ELFOSABI_SYSV, ET_CORE; little-endian (ELFDATA2LSB, as
      xg_core_x86.h's ELF_ARCH_DATA); section headers right after it, no program headers.
    * "Sections", in xg_core.c's order: null, .shstrtab, .note.Xen, .xen_prstatus
      (nr_vcpus contexts, zeros here), .xen_shared_info (one page), then, after
      padding to a page boundary, .xen_pages and the pfn table: ".xen_pfn" (array of
      uint64_t pfn, auto-translated guests) or ".xen_p2m" (array of struct
      xen_dumpcore_p2m {uint64_t pfn; uint64_t gmfn;}, PV guests); an invalid entry
      is pfn ~0 (gmfn ~0) with a zero page.
    * "note section": notes named "Xen" (namesz 4): none (0x2000000), header
      (0x2000001: xch_magic, xch_nr_vcpus, xch_nr_pages, xch_page_size), xen_version
      (0x2000002, 1280 bytes of struct xen_dumpcore_elfnote_xen_version_desc) and
      format_version (0x2000003: major << 32 | minor, (0, 1) being the current one).
    """
    assert len(pages) == PAGE_SIZE * len(pfns)
    n = len(pfns)
    nr_pages = n if nr_pages is None else nr_pages
    magic = magic if magic is not None else (0xF00FEBED if tables == (P2M,) else 0xF00FEBEE)
    xen_version = struct.pack("<QQ", 4, 19) + bytes(16 + 144 + 1024 + 64 + 8) + struct.pack("<Q", PAGE_SIZE)
    notes = (note(0x2000000, b"")
             + note(0x2000001, struct.pack("<QQQQ", magic, nr_vcpus, nr_pages, page_size))
             + note(0x2000002, xen_version)
             + note(0x2000003, struct.pack("<Q", version[0] << 32 | version[1])))
    table_data = {PFN: b"".join(struct.pack("<Q", p) for p in pfns),
                  P2M: b"".join(struct.pack("<QQ", p, INVALID if p == INVALID else 0x40000 + p) for p in pfns)}
    # (name, sh_type, contents, addralign, entsize): SHT_STRTAB 3, SHT_NOTE 7, SHT_PROGBITS 1
    body = [(".note.Xen", 7, notes, 0, 0),
            (".xen_prstatus", 1, bytes(CONTEXT_SIZE * nr_vcpus), 8, CONTEXT_SIZE),
            (".xen_shared_info", 1, bytes(PAGE_SIZE), 8, PAGE_SIZE)]
    tail = [(".xen_pages", 1, pages, PAGE_SIZE, PAGE_SIZE)]
    tail += [(t, 1, table_data[t], 8, {PFN: 8, P2M: 16}[t]) for t in tables]
    names = [".shstrtab"] + [s[0] for s in body + tail]
    strtab, name_at = b"\0", {}
    for name in names:
        name_at[name] = len(strtab)
        strtab += name.encode() + b"\0"
    shnum = 2 + len(body) + len(tail)
    at = 64 + 64 * shnum
    offsets, blob = {}, b""
    for name, _, data, _, _ in body:
        offsets[name] = at + len(blob)
        blob += data
    blob += bytes(-(at + len(blob)) % PAGE_SIZE)  # "Pad the output data to page alignment."
    for name, _, data, _, _ in tail:
        offsets[name] = at + len(blob)
        blob += data
    offsets[".shstrtab"] = at + len(blob)
    blob += strtab
    sections = [(".shstrtab", 3, strtab, 0, 0)] + body + tail
    shdrs = bytes(64)  # the null section
    for name, typ, data, align, entsize in sections:
        shdrs += struct.pack("<IIQQQQIIQQ", name_at[name], typ, 0, 0, offsets[name], len(data), 0, 0,
                             align, entsize)
    ehdr = b"\x7fELF" + bytes([2, 1, 1, 0, 1]) + bytes(7)  # e_ident: ELFCLASS64, LSB, EV_CURRENT, SYSV
    ehdr += struct.pack("<HHIQQQIHHHHHH", 4, 62, 1, 0, 0, 64, 0, 64, 56, 0, 64, shnum, 1)  # ET_CORE, x86-64
    data = bytearray(ehdr + shdrs + blob)
    shdr_at = {name: 64 + 64 * (1 + i) for i, (name, *_) in enumerate(sections)}
    desc = offsets[".note.Xen"] + 16 + 16  # after the none note (16 bytes) and the header note's header
    version_desc = offsets[".note.Xen"] + 16 + 48 + 16 + 1280 + 16
    return XenFile(data, shdr_at, offsets, name_at, desc, version_desc)


def random_page(seed):
    return np.random.default_rng(seed).integers(0, 256, PAGE_SIZE, dtype=np.uint8).tobytes()


def h(page):
    return xxhash.xxh3_64_intdigest(page)


@pytest.fixture(params=[1, 2], ids=["one-thread", "threads"])
def threads(request, monkeypatch):
    """Run on one thread, and on two threads sharing pieces of one page."""
    if request.param > 1:
        monkeypatch.setattr(hashing, "CHUNK_PAGES", 1)
    return request.param


A, B, C, ZERO = random_page(1), random_page(2), random_page(3), bytes(PAGE_SIZE)


@pytest.mark.parametrize("table", [PFN, P2M])
def test_core_pages_by_pfn(tmp_path, threads, table):
    """A .xen_pfn (HVM) and a .xen_p2m (PV) core: invalid entries skipped, frames by pfn.

    Xen writes pfns in ascending order (the description requires it); these are
    not, and an invalid entry sits in the middle as well as at the end.
    """
    pages = [A, ZERO, B, ZERO, C, A, ZERO]
    pfns = [0x100007, 2, 5, INVALID, 0, 3, INVALID]
    core = xen_core(b"".join(pages), pfns, tables=(table,))
    (tmp_path / "vm.core").write_bytes(core.data)
    gfn, hashes = read_xen_core(tmp_path / "vm.core", threads)
    assert gfn.dtype == np.int64 and hashes.dtype == np.uint64
    assert gfn.tolist() == [0, 2, 3, 5, 0x100007]
    assert hashes.tolist() == [h(C), h(ZERO), h(A), h(B), h(A)]
    assert hashes[1] == ZERO_HASH


def test_registered_as_xen():
    assert SNAPSHOT_READERS["xen"] is read_xen_core


def test_single_page_and_adjacent_runs(tmp_path, threads):
    for pfns in ([9], [INVALID, 4, INVALID], [1, 2, INVALID, INVALID, 3, 4, 5]):
        pages = [random_page(10 + i) for i in range(len(pfns))]
        (tmp_path / "c.core").write_bytes(xen_core(b"".join(pages), pfns).data)
        gfn, hashes = read_xen_core(tmp_path / "c.core", threads)
        want = sorted((p, h(page)) for p, page in zip(pfns, pages) if p != INVALID)
        assert list(zip(gfn.tolist(), hashes.tolist())) == want


# Each case breaks a valid .xen_pfn core (pfns 0..3) and says where the error is and what it says.
def _shdr(name, field, value):
    def change(core):
        core.set_shdr(name, field, value(core) if callable(value) else value)
        return f"offset {core.shdr[name]}"
    return change


def _rename(name, new):
    """Rename a section in .shstrtab (same length)."""
    def change(core):
        at = core.offset[".shstrtab"] + core.strtab[name]
        core.data[at:at + len(new)] = new.encode()
        return f"section {name}"
    return change


def _ehdr(at, fmt, value):
    def change(core):
        struct.pack_into(fmt, core.data, at, value)
        return f"offset {at}"
    return change


def _whole(data, where="offset 0"):
    def change(core):
        core.data[:] = data
        return where
    return change


def _u64(field_at, value, where_at=None):
    def change(core):
        at = field_at(core)
        struct.pack_into("<Q", core.data, at, value)
        return f"offset {where_at(core) if where_at else at}"
    return change


def _then(change, where):
    def both(core):
        change(core)
        return where(core) if callable(where) else where
    return both


MALFORMED = {
    "not-elf": (_whole(b"\0" * PAGE_SIZE), r"expected an ELF core \(magic 7f 45 4c 46\)"),
    "empty": (_whole(b""), "found an empty file"),
    "short-header": (_whole(b"\x7fELF\2\1", "offset 6"), "expected a 64-byte ELF64 header"),
    "elf32": (_ehdr(4, "<B", 1), r"expected ELFCLASS64 \(2\)"),
    "big-endian": (_ehdr(5, "<B", 2), r"expected little-endian data \(ELFDATA2LSB, 1\); found 2"),
    "not-a-core": (_ehdr(16, "<H", 2), r"expected e_type ET_CORE \(4\); found 2"),
    "no-section-headers": (_then(_ehdr(60, "<H", 0), "offset 40"), "expected section headers"),
    "shentsize": (_ehdr(58, "<H", 40), r"expected e_shentsize 64 \(Elf64_Shdr\); found 40"),
    "section-headers-past-end": (_then(_ehdr(40, "<Q", 1 << 62), "offset 40"),
                                 "expected 7 section headers at offset 4611686018427387904 inside"),
    "absurd-section-count": (_then(_ehdr(60, "<H", 0xFFFF), "offset 40"),
                             "expected 65535 section headers at offset 64 inside the"),
    "shstrndx-out-of-range": (_ehdr(62, "<H", 7), "expected e_shstrndx to name one of the 7 sections"),
    "shstrndx-null": (_ehdr(62, "<H", 0), "expected e_shstrndx to name one of the 7 sections"),
    "shstrtab-not-SHT_STRTAB": (_shdr(".shstrtab", "type", 1), "to be the section name string table, type SHT_STRTAB"),
    "sh-name-out-of-range": (_shdr(".xen_pages", "name", 1 << 20),
                             "expected sh_name 1048576 to start a NUL-terminated name inside the"),
    "strtab-past-end": (_shdr(".shstrtab", "offset", lambda c: len(c.data) - 2),
                        r"expected section 1 \(.* bytes at offset .*\) inside the .*-byte file"),
    "pages-past-end": (_shdr(".xen_pages", "size", 1 << 63), r"expected section 5 \(9223372036854775808 bytes"),
    "pages-offset-past-end": (_shdr(".xen_pages", "offset", 1 << 40), r"expected section 5 .* inside the"),
    "table-past-end": (_shdr(PFN, "size", (1 << 64) - 8), r"expected section 6 .* is the file truncated"),
    "truncated": (_then(lambda c: c.data.__delitem__(slice(-5, None)), lambda c: f"offset {c.shdr['.shstrtab']}"),
                  "expected section 1 .* inside the .*-byte file; is the file truncated"),
    "truncated-in-pages": (_then(lambda c: c.data.__delitem__(slice(c.offset[".xen_pages"] + 100, None)),
                                 lambda c: f"offset {c.shdr['.shstrtab']}"), "is the file truncated"),
    "no-pages": (_rename(".xen_pages", ".xen_pagez"),
                 r"expected a \.xen_pages section, as the Xen dump-core format requires; .*\.xen_pagez"),
    "no-table": (_rename(PFN, ".xen_pfX"), r"expected one pfn table, \.xen_pfn .* or \.xen_p2m .*found neither"),
    "no-notes": (_rename(".note.Xen", ".note.Xem"), r"expected a \.note\.Xen section"),
    "notes-not-SHT_NOTE": (_then(_shdr(".note.Xen", "type", 1), "section .note.Xen"),
                           "expected section type 7; found 1"),
    "pages-nobits": (_then(_shdr(".xen_pages", "type", 8), "section .xen_pages"),
                     "expected section type 1; found 8"),
    "two-pages-sections": (_then(_shdr(".xen_shared_info", "name", lambda c: c.strtab[".xen_pages"]),
                                 lambda c: f"offset {c.shdr['.xen_pages']}"),
                           r"expected one \.xen_pages section, found 2"),
    "table-partial-entry": (_then(_shdr(PFN, "size", 4 * 8 - 4), "section .xen_pfn"),
                            "expected whole 8-byte entries; found 28 bytes"),
    "fewer-entries-than-pages": (_then(_shdr(PFN, "size", 3 * 8), "section .xen_pfn"),
                                 r"expected one entry per page of \.xen_pages \(4 pages\); found 3 entries"),
    "fewer-pages-than-entries": (_then(_shdr(".xen_pages", "size", 3 * PAGE_SIZE), "section .xen_pfn"),
                                 r"expected one entry per page of \.xen_pages \(3 pages\); found 4 entries"),
    "partial-page": (_then(_shdr(".xen_pages", "size", 4 * PAGE_SIZE - 1), "section .xen_pages"),
                     "expected whole 4096-byte pages; found 16383 bytes"),
    "nr-pages-disagrees": (_then(_u64(lambda c: c.header_desc + 16, 5), "section .xen_pfn"),
                           r"expected xch_nr_pages \(5\) entries, as the header note says; found 4"),
    "absurd-nr-pages": (_then(_u64(lambda c: c.header_desc + 16, 1 << 60), "section .xen_pfn"),
                        r"expected xch_nr_pages \(1152921504606846976\) entries"),
    "page-size": (_u64(lambda c: c.header_desc + 24, 16384),
                  "expected xch_page_size 4096 .*; found 16384"),
    "magic": (_u64(lambda c: c.header_desc, 0xDEADBEEF),
              "expected xch_magic 0xf00febed .* or 0xf00febee .*; found 0xdeadbeef"),
    "format-major": (_u64(lambda c: c.version_desc, 1 << 32 | 1),
                     "expected dump-core format major version 0; found 1.1"),
    "no-header-note": (_then(lambda c: struct.pack_into("<I", c.data, c.header_desc - 8, 0x2000009),
                             "section .note.Xen"), r"expected a dump-core header note \(name 'Xen', type 0x2000001\)"),
    "header-note-size": (_u64(lambda c: c.header_desc - 12, 24 | 0x2000001 << 32, lambda c: c.header_desc - 16),
                         "expected a 32-byte dump-core header descriptor; found 24 bytes"),
    "note-past-section": (_then(_shdr(".note.Xen", "size", lambda c: 16 + 48 + 16 + 1280 + 16 + 4),
                                lambda c: f"offset {c.version_desc - 16}"),
                          "expected the note's 4-byte name and 8-byte descriptor inside .note.Xen"),
    "note-absurd-descsz": (_u64(lambda c: c.header_desc - 16, 4 | 0xFFFFFFF0 << 32),
                           "expected the note's 4-byte name and 4294967280-byte descriptor"),
    "duplicate-pfn": (_u64(lambda c: c.offset[PFN] + 3 * 8, 1),
                      "expected each pfn once in .xen_pfn; pfn 0x1 of entry 3 is also entry 1"),
    "pfn-beyond-64-bit-addresses": (_u64(lambda c: c.offset[PFN] + 2 * 8, 1 << 52),
                                    r"expected a pfn below 2\*\*52 or ~0 .* entry 2; found 0x10000000000000"),
    "all-invalid": (_then(lambda c: c.data.__setitem__(slice(c.offset[PFN], c.offset[PFN] + 32), b"\xff" * 32),
                          "section .xen_pfn"), "expected at least one valid pfn; every entry is ~0"),
}


@pytest.mark.parametrize("case", MALFORMED, ids=list(MALFORMED))
def test_malformed_core_named(tmp_path, case):
    change, message = MALFORMED[case]
    core = xen_core(b"".join([A, B, C, ZERO]), [0, 1, 2, 3])
    where = change(core)
    path = tmp_path / "bad.core"
    path.write_bytes(core.data)
    with pytest.raises(InputError) as e:
        read_xen_core(path)
    assert e.value.path == str(path)
    assert e.value.where == where
    assert re.search(message, e.value.expected), e.value.expected
    assert str(e.value).startswith(f"{path}, {where}: ")


def test_both_tables_named(tmp_path):
    core = xen_core(A + B, [0, 1], tables=(PFN, P2M))
    (tmp_path / "both.core").write_bytes(core.data)
    with pytest.raises(InputError, match=r"both\.core, section \.xen_p2m: expected one pfn table.*found both"):
        read_xen_core(tmp_path / "both.core")


def test_p2m_errors_name_the_p2m_entry(tmp_path):
    core = xen_core(A + B + C, [4, 9, 4], tables=(P2M,))
    (tmp_path / "pv.core").write_bytes(core.data)
    with pytest.raises(InputError) as e:
        read_xen_core(tmp_path / "pv.core")
    assert e.value.where == f"offset {core.offset[P2M] + 2 * 16}"
    assert e.value.expected == "expected each pfn once in .xen_p2m; pfn 0x4 of entry 2 is also entry 0"
    core.set_shdr(P2M, "size", 3 * 16 - 8)
    (tmp_path / "pv.core").write_bytes(core.data)
    with pytest.raises(InputError, match=r"section \.xen_p2m: expected whole 16-byte entries; found 40 bytes"):
        read_xen_core(tmp_path / "pv.core")


def test_missing_file_and_directory_named(tmp_path):
    with pytest.raises(InputError, match=r"nope\.core: expected a Xen dump-core file; no such file"):
        read_xen_core(tmp_path / "nope.core")
    with pytest.raises(InputError, match="expected a Xen dump-core file; not a regular file"):
        read_xen_core(tmp_path)


def test_manifest_names_xen_and_normalises(tmp_path):
    """A 1 MiB guest as a xen snapshot and as a pmemsave dump of the same memory: equal frames."""
    from xpipe.normalise import normalise_frames

    mem = [ZERO] * 256
    mem[0], mem[7], mem[8], mem[255] = A, B, A, C
    raw = b"".join(mem)
    (tmp_path / "s0.raw").write_bytes(raw)
    # Xen's order (ascending pfns), then an unused entry: pfn ~0 with a zero page
    (tmp_path / "s1.core").write_bytes(xen_core(raw + ZERO, list(range(256)) + [INVALID]).data)
    d = {"id": "hvm-1", "workload": "idle", "memory_mib": 1, "snapshots": [
        {"time_s": 1, "pmemsave": "s0.raw"}, {"time_s": 2, "xen": "s1.core"}]}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"format": "xpipe-capture/1", "domains": [d]}))
    domain = load_manifest(tmp_path / "m.yaml").domains[0]
    assert [s.kind for s in domain.snapshots] == ["pmemsave", "xen"]
    assert domain.snapshots[1].path == tmp_path / "s1.core"
    frames = normalise_frames(domain)
    per_snap = frames.partition_by("snapshot", as_dict=True)
    want = [h(p) for p in mem]
    assert per_snap[(1,)]["hash"].to_list() == want
    assert per_snap[(1,)]["gfn"].to_list() == list(range(256))
    assert per_snap[(0,)]["hash"].to_list() == want
    assert frames["domain"].unique().to_list() == ["hvm-1"]


def test_manifest_bad_xen_snapshot_named(tmp_path):
    from xpipe.normalise import normalise_frames

    core = xen_core(A + B, [0, 0])
    (tmp_path / "s0.core").write_bytes(core.data)
    d = {"id": "a", "workload": "idle", "memory_mib": 1, "snapshots": [{"time_s": 1, "xen": "s0.core"}]}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump({"format": "xpipe-capture/1", "domains": [d]}))
    with pytest.raises(InputError, match=rf"s0\.core, offset {core.offset[PFN] + 8}: expected each pfn once"):
        normalise_frames(load_manifest(tmp_path / "m.yaml").domains[0])


VALID = {t: bytes(xen_core(b"".join([A, ZERO, B]), [0, 5, INVALID], tables=(t,)).data) for t in (PFN, P2M)}
SIZE = len(VALID[PFN])
HEADERS = VALID[PFN].index(A)  # ELF header, section headers, notes, prstatus, shared info, padding
INTERESTING = [0, 1, 7, 8, 64, 4095, 4096, SIZE, 1 << 31, 1 << 32, 1 << 52, 1 << 63, (1 << 64) - 1]


def _edit():
    flip = st.tuples(st.one_of(st.integers(0, HEADERS - 1), st.integers(SIZE - 300, SIZE - 1)),
                     st.binary(min_size=1, max_size=1))
    word = st.tuples(st.integers(0, HEADERS // 8 - 1).map(lambda i: 8 * i),
                     st.sampled_from(INTERESTING).map(lambda v: struct.pack("<Q", v)))
    tail_word = st.tuples(st.integers(0, 300 // 8).map(lambda i: SIZE - 300 + 8 * i),
                          st.sampled_from(INTERESTING).map(lambda v: struct.pack("<Q", v)))
    return st.one_of(flip, word, tail_word)


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=st.sampled_from([PFN, P2M]), edits=st.lists(_edit(), max_size=6),
       cut=st.one_of(st.none(), st.integers(0, SIZE)))
def test_damaged_core_reads_or_raises_input_error(tmp_path, table, edits, cut):
    """Any byte flipped, any header word set to an edge value, any truncation: a
    result or an InputError naming the file, never another exception."""
    data = bytearray(VALID[table])
    for at, value in edits:
        data[at:at + len(value)] = value
    data = data[:len(data) if cut is None else cut]
    path = tmp_path / "fuzz.core"
    path.write_bytes(bytes(data))
    try:
        gfn, hashes = read_xen_core(path, 1)
    except InputError as e:
        assert e.path == str(path)
        return
    assert gfn.dtype == np.int64 and hashes.dtype == np.uint64 and len(gfn) == len(hashes) > 0
    assert (np.diff(gfn) > 0).all() and gfn[0] >= 0
