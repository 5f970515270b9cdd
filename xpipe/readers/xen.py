"""Guest memory as Xen writes it: `xl dump-core` files (Xen's dump-core format).

The format is Xen's ``docs/misc/dump-core-format.txt``; the writer is
``tools/libs/guest/xg_core.c`` (``xc_domain_dumpcore_via_callback``) with the
structures of ``tools/libs/guest/xg_core.h``. A dump-core file is an ELF64 core
(``ET_CORE``) with section headers and no program headers:

* ``.note.Xen`` (SHT_NOTE): notes named "Xen"; the header note
  (XEN_ELFNOTE_DUMPCORE_HEADER, 0x2000001, ``xen/include/public/elfnote.h``)
  holds ``{u64 xch_magic, xch_nr_vcpus, xch_nr_pages, xch_page_size}``; the
  format-version note (0x2000003) holds ``u64 version``, major in the high 32 bits.
* ``.xen_pages``: ``xch_nr_pages`` pages of ``xch_page_size`` bytes.
* ``.xen_pfn`` (auto-translated guests: HVM, PVH, Arm): ``u64 pfn`` per page, or
  ``.xen_p2m`` (x86 PV guests): ``{u64 pfn; u64 gmfn}`` per page. Entry i names
  the guest frame of page i of ``.xen_pages``; ``pfn == ~0``
  (XC_CORE_INVALID_PFN) marks an unused entry (a zero page of padding).

Only the headers and the pfn table are read here; the pages are hashed straight
from the file (xpipe.hashing.hash_file), so a dump never sits in memory whole.
Every size the file declares is checked against the file before it is used,
and every malformed file is one InputError naming the offset or section.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpipe.errors import InputError
from xpipe.hashing import PAGE_SIZE, hash_file
from xpipe.readers.memdump import mapped

ET_CORE = 4
SHT_NULL, SHT_PROGBITS, SHT_STRTAB, SHT_NOTE, SHT_NOBITS = 0, 1, 3, 7, 8
EHDR_SIZE = 64  # sizeof(Elf64_Ehdr)
SHDR_SIZE = 64  # sizeof(Elf64_Shdr)
SHDR = struct.Struct("<IIQQQQIIQQ")  # name type flags addr offset size link info addralign entsize

NOTES = ".note.Xen"
PAGES = ".xen_pages"
PFN = ".xen_pfn"
P2M = ".xen_p2m"
#: table section -> bytes per entry: u64 pfn, or struct xen_dumpcore_p2m {u64 pfn; u64 gmfn}
TABLES = {PFN: 8, P2M: 16}

XEN_ELFNOTE_DUMPCORE_HEADER = 0x2000001
XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION = 0x2000003
XC_CORE_MAGIC = 0xF00FEBED  # paravirtualised domain
XC_CORE_MAGIC_HVM = 0xF00FEBEE  # fully virtualised domain
FORMAT_MAJOR = 0  # the only major version of the format (docs/misc/dump-core-format.txt)
XC_CORE_INVALID_PFN = (1 << 64) - 1
#: A pfn whose 4 KiB frame has a 64-bit guest-physical address.
PFN_LIMIT = 1 << (64 - 12)


@dataclass(frozen=True)
class Section:
    """One section header: its name, type, where its bytes are, and where the header itself is."""

    name: str
    type: int
    offset: int
    size: int
    header_at: int


@dataclass(frozen=True)
class CoreHeader:
    """The descriptor of the XEN_ELFNOTE_DUMPCORE_HEADER note."""

    magic: int
    nr_vcpus: int
    nr_pages: int
    page_size: int


@dataclass(frozen=True)
class XenCore:
    """Where a dump-core file's pages are and which guest frame each one is."""

    header: CoreHeader
    table: Section  # .xen_pfn or .xen_p2m
    pages: Section  # .xen_pages
    pfn: np.ndarray  # uint64, one per page of .xen_pages, XC_CORE_INVALID_PFN for unused entries


def read_xen_core(path: str | Path, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(gfn, hash) of every page of a Xen dump-core file, by guest frame number (its pfn).

    Entries whose pfn is ~0 (XC_CORE_INVALID_PFN) are skipped. ``threads``: 0 for one per core.
    """
    path = Path(path)
    core = xen_core_layout(path)
    valid = core.pfn != np.uint64(XC_CORE_INVALID_PFN)
    index = np.flatnonzero(valid)
    # consecutive valid entries are consecutive pages: one range each
    breaks = np.flatnonzero(np.diff(index) != 1) + 1
    starts = index[np.r_[0, breaks]]
    counts = np.diff(np.r_[0, breaks, len(index)])
    hashes = hash_file(path, [(core.pages.offset + int(s) * PAGE_SIZE, int(n)) for s, n in zip(starts, counts)],
                       threads)
    gfn = core.pfn[index].astype(np.int64)  # < PFN_LIMIT: checked
    order = np.argsort(gfn, kind="stable")  # the format keeps pfns ascending; do not rely on it
    return gfn[order], hashes[order]


def xen_core_layout(path: Path) -> XenCore:
    """The checked layout of a dump-core file: its header note, its sections and its pfn table."""
    with mapped(path, "a Xen dump-core file") as m:
        sections = read_sections(path, m)
        header = read_header_note(path, m, one_section(path, sections, NOTES, SHT_NOTE, required=True))
        pages = one_section(path, sections, PAGES, SHT_PROGBITS, required=True)
        tables = [s for name in TABLES if (s := one_section(path, sections, name, SHT_PROGBITS))]
        if len(tables) != 1:
            found = "neither" if not tables else "both"
            raise InputError(path, f"section {P2M if tables else PFN}",
                             f"expected one pfn table, {PFN} (auto-translated guests) or {P2M} "
                             f"(PV guests), found {found}")
        table = tables[0]
        pfn = read_pfn_table(path, m, table, pages, header)
    return XenCore(header, table, pages, pfn)


def read_sections(path: Path, m) -> list[Section]:
    """Every section header of the ELF64 little-endian core, named from the section string table."""
    size = len(m)
    if m[:4] != b"\x7fELF":
        raise InputError(path, "offset 0", "expected an ELF core (magic 7f 45 4c 46), as xl dump-core writes")
    if size < EHDR_SIZE:
        raise InputError(path, f"offset {size}", "expected a 64-byte ELF64 header; the file is truncated")
    if m[4] != 2:
        raise InputError(path, "offset 4", f"expected ELFCLASS64 (2), which Xen writes on every "
                                           f"architecture; found {m[4]}")
    if m[5] != 1:
        raise InputError(path, "offset 5", f"expected little-endian data (ELFDATA2LSB, 1); found {m[5]}")
    e_type, = struct.unpack_from("<H", m, 16)
    if e_type != ET_CORE:
        raise InputError(path, "offset 16", f"expected e_type ET_CORE (4); found {e_type}")
    e_shoff, = struct.unpack_from("<Q", m, 40)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", m, 58)
    if e_shoff == 0 or e_shnum == 0:
        raise InputError(path, "offset 40", "expected section headers (e_shoff, e_shnum): a Xen dump-core "
                                            "file has sections, not program headers")
    if e_shentsize != SHDR_SIZE:
        raise InputError(path, "offset 58", f"expected e_shentsize {SHDR_SIZE} (Elf64_Shdr); found {e_shentsize}")
    if e_shoff + e_shnum * SHDR_SIZE > size:
        raise InputError(path, "offset 40", f"expected {e_shnum} section headers at offset {e_shoff} inside "
                                            f"the {size}-byte file")
    if not 0 < e_shstrndx < e_shnum:
        raise InputError(path, "offset 62", f"expected e_shstrndx to name one of the {e_shnum} sections "
                                            f"(the section name string table); found {e_shstrndx}")
    raw = []
    for i in range(e_shnum):
        at = e_shoff + i * SHDR_SIZE
        name, typ, _flags, _addr, offset, length, *_ = SHDR.unpack_from(m, at)
        if typ not in (SHT_NULL, SHT_NOBITS) and offset + length > size:
            raise InputError(path, f"offset {at}", f"expected section {i} ({length} bytes at offset {offset}) "
                                                   f"inside the {size}-byte file; is the file truncated?")
        raw.append((name, typ, offset, length, at))
    _, str_type, str_off, str_size, str_at = raw[e_shstrndx]
    if str_type != SHT_STRTAB:
        raise InputError(path, f"offset {str_at}", f"expected section {e_shstrndx} (e_shstrndx) to be the "
                                                   f"section name string table, type SHT_STRTAB (3); found {str_type}")
    strtab = m[str_off:str_off + str_size]
    sections = []
    for name, typ, offset, length, at in raw:
        if typ == SHT_NULL:
            continue
        end = strtab.find(b"\0", name) if name < len(strtab) else -1
        if end < 0:
            raise InputError(path, f"offset {at}", f"expected sh_name {name} to start a NUL-terminated name "
                                                   f"inside the {len(strtab)}-byte section string table")
        sections.append(Section(strtab[name:end].decode("ascii", "backslashreplace"), typ, offset, length, at))
    return sections


def one_section(path: Path, sections: list[Section], name: str, typ: int, required: bool = False) -> Section | None:
    """The section called ``name``, checked to be the one section of that name and of type ``typ``."""
    found = [s for s in sections if s.name == name]
    if not found:
        if required:
            names = ", ".join(s.name for s in sections) or "none"
            raise InputError(path, f"section {name}", f"expected a {name} section, as the Xen dump-core "
                                                      f"format requires; the file's sections: {names}")
        return None
    if len(found) > 1:
        raise InputError(path, f"offset {found[1].header_at}", f"expected one {name} section, found {len(found)}")
    if found[0].type != typ:
        raise InputError(path, f"section {name}", f"expected section type {typ}; found {found[0].type}")
    return found[0]


def read_header_note(path: Path, m, notes: Section) -> CoreHeader:
    """The XEN_ELFNOTE_DUMPCORE_HEADER descriptor, checked: 4 KiB pages, a known magic, format 0.x."""
    at, end = notes.offset, notes.offset + notes.size
    header, header_at = None, 0
    while at < end:
        if at + 12 > end:
            raise InputError(path, f"offset {at}", f"expected a 12-byte note header inside {NOTES}")
        namesz, descsz, typ = struct.unpack_from("<III", m, at)
        desc = at + 12 + (namesz + 3) // 4 * 4
        nxt = desc + (descsz + 3) // 4 * 4
        if nxt > end:
            raise InputError(path, f"offset {at}", f"expected the note's {namesz}-byte name and {descsz}-byte "
                                                   f"descriptor inside {NOTES}")
        if m[at + 12:at + 12 + namesz].rstrip(b"\0") == b"Xen":
            if typ == XEN_ELFNOTE_DUMPCORE_HEADER:
                if descsz != 32:
                    raise InputError(path, f"offset {at}", f"expected a 32-byte dump-core header descriptor; "
                                                           f"found {descsz} bytes")
                if header is not None:
                    raise InputError(path, f"offset {at}", "expected one dump-core header note, found another")
                header, header_at = CoreHeader(*struct.unpack_from("<QQQQ", m, desc)), desc
            elif typ == XEN_ELFNOTE_DUMPCORE_FORMAT_VERSION and descsz >= 8:
                version, = struct.unpack_from("<Q", m, desc)
                if version >> 32 != FORMAT_MAJOR:
                    raise InputError(path, f"offset {desc}",
                                     f"expected dump-core format major version {FORMAT_MAJOR}; found "
                                     f"{version >> 32}.{version & 0xFFFFFFFF}")
        at = nxt
    if header is None:
        raise InputError(path, f"section {NOTES}", f"expected a dump-core header note (name 'Xen', type "
                                                   f"{XEN_ELFNOTE_DUMPCORE_HEADER:#x})")
    if header.magic not in (XC_CORE_MAGIC, XC_CORE_MAGIC_HVM):
        raise InputError(path, f"offset {header_at}", f"expected xch_magic {XC_CORE_MAGIC:#x} (PV) or "
                                                 f"{XC_CORE_MAGIC_HVM:#x} (HVM); found {header.magic:#x}")
    if header.page_size != PAGE_SIZE:
        raise InputError(path, f"offset {header_at + 24}", f"expected xch_page_size {PAGE_SIZE} (xpipe hashes "
                                                      f"4 KiB pages); found {header.page_size}")
    return header


def read_pfn_table(path: Path, m, table: Section, pages: Section, header: CoreHeader) -> np.ndarray:
    """The pfn of each page of .xen_pages (uint64), checked against the pages and the header note."""
    entry = TABLES[table.name]
    if table.size % entry:
        raise InputError(path, f"section {table.name}",
                         f"expected whole {entry}-byte entries; found {table.size} bytes")
    n = table.size // entry
    if pages.size % PAGE_SIZE:
        raise InputError(path, f"section {PAGES}", f"expected whole {PAGE_SIZE}-byte pages; "
                                                   f"found {pages.size} bytes")
    if pages.size // PAGE_SIZE != n:
        raise InputError(path, f"section {table.name}", f"expected one entry per page of {PAGES} "
                                                        f"({pages.size // PAGE_SIZE} pages); found {n} entries")
    if header.nr_pages != n:
        raise InputError(path, f"section {table.name}", f"expected xch_nr_pages ({header.nr_pages}) entries, "
                                                        f"as the header note says; found {n}")
    # a copy of the table, bounded by the file: the section was checked to lie inside it
    words = np.frombuffer(m[table.offset:table.offset + n * entry], dtype="<u8")
    pfn = words[::entry // 8].astype(np.uint64)  # pfn, or pfn of each {pfn, gmfn}
    valid = pfn != np.uint64(XC_CORE_INVALID_PFN)
    too_big = np.flatnonzero(valid & (pfn >= np.uint64(PFN_LIMIT)))
    if len(too_big):
        i = int(too_big[0])
        raise InputError(path, f"offset {table.offset + i * entry}",
                         f"expected a pfn below 2**52 or ~0 (XC_CORE_INVALID_PFN) in {table.name} entry {i}; "
                         f"found {int(pfn[i]):#x}")
    index = np.flatnonzero(valid)
    if not len(index):
        raise InputError(path, f"section {table.name}", "expected at least one valid pfn; every entry is ~0")
    order = index[np.argsort(pfn[index], kind="stable")]
    dup = np.flatnonzero(pfn[order[1:]] == pfn[order[:-1]])
    if len(dup):
        first, again = int(order[dup[0]]), int(order[dup[0] + 1])
        raise InputError(path, f"offset {table.offset + again * entry}",
                         f"expected each pfn once in {table.name}; pfn {int(pfn[again]):#x} of entry {again} "
                         f"is also entry {first}")
    return pfn
