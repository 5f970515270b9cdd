"""What kind of page a guest frame holds: the rules, defined once.

A frame's type follows from a few facts: its /proc/kpageflags bits (when the
guest's flags were captured), whether its content is the zero page, and
whether its content equals a block of the domain's disk image (then it is
page cache). The facts are packed into one 64-bit word per frame, and the
first rule of RULES whose bits match names the type.

Stage 2 applies the rules with polars (xpipe.extract.page_types) and
`xpipe hash` with numpy (type_codes, which keeps that command free of
polars' start-up cost); tests check the two agree. This module imports
neither polars nor the schemas, for the same reason.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: Bits of /proc/kpageflags (the kernel's Documentation/admin-guide/mm/pagemap.rst).
KPF = {"SLAB": 7, "BUDDY": 10, "MMAP": 11, "ANON": 12, "NOPAGE": 20, "PGTABLE": 26, "RESERVED": 32}

#: Facts that are not kpageflags, in bits the kernel does not use.
KNOWN = 1 << 61  # the frame's kpageflags were captured
ZERO = 1 << 62  # its content is 4096 zero bytes
ON_DISK = 1 << 63  # its content equals a block of the domain's disk image
FLAG_BITS = KNOWN - 1  # the kpageflags bits kept in a facts word


def flag(name: str) -> int:
    return 1 << KPF[name]


#: Page types in the order of the page_type Enum. ``file`` is file-backed where
#: kpageflags are missing and code cannot be told from data.
PAGE_TYPES = (
    "zero",  # content is 4096 zero bytes (and the frame is not free)
    "free",  # kpageflags BUDDY: free in the guest's page allocator
    "kernel",  # kpageflags RESERVED: kernel image, boot-time allocations
    "file_code",  # equals a disk block; mapped into a process (kpageflags MMAP)
    "file_data",  # equals a disk block; page cache not mapped (read() data)
    "file",  # equals a disk block; no kpageflags to split code from data
    "slab",  # kpageflags SLAB: kernel object caches
    "pagetable",  # kpageflags PGTABLE
    "anonymous",  # kpageflags ANON: process heap and stacks
    "unknown",  # none of the above
)


class Rule(NamedTuple):
    """A frame is ``page_type`` when its facts have every bit of ``need`` and none of ``forbid``."""

    page_type: str
    need: int
    forbid: int = 0


#: First match wins. A free frame reads as zeros but is free, not zero; a disk
#: block's content in an anonymous page (a copy a process made) is not page cache.
RULES = (
    Rule("free", KNOWN | flag("BUDDY")),
    Rule("zero", ZERO),
    Rule("kernel", KNOWN | flag("RESERVED")),
    Rule("file_code", ON_DISK | KNOWN | flag("MMAP"), forbid=flag("ANON")),
    Rule("file_data", ON_DISK | KNOWN, forbid=flag("ANON")),
    Rule("file", ON_DISK, forbid=KNOWN),
    Rule("slab", KNOWN | flag("SLAB")),
    Rule("pagetable", KNOWN | flag("PGTABLE")),
    Rule("anonymous", KNOWN | flag("ANON")),
    Rule("unknown", 0),
)
assert {r.page_type for r in RULES} == set(PAGE_TYPES) and RULES[-1].need == 0


def type_codes(zero: np.ndarray, flags: np.ndarray | None = None, known: np.ndarray | None = None,
               on_disk: np.ndarray | None = None) -> np.ndarray:
    """Each frame's index in PAGE_TYPES, by RULES (uint8).

    ``zero``: the frame holds the zero page; ``flags``/``known``: its kpageflags
    and whether they were captured (None: none were); ``on_disk``: its content
    equals a disk block (None: no disk to compare with).
    """
    facts = np.where(zero, np.uint64(ZERO), np.uint64(0))
    if flags is not None:
        facts |= (flags & np.uint64(FLAG_BITS)) | np.where(known, np.uint64(KNOWN), np.uint64(0))
    if on_disk is not None:
        facts |= np.where(on_disk, np.uint64(ON_DISK), np.uint64(0))
    codes = np.full(len(facts), PAGE_TYPES.index(RULES[-1].page_type), dtype=np.uint8)
    present = int(np.bitwise_or.reduce(facts)) if len(facts) else 0
    for rule in reversed(RULES[:-1]):  # earlier rules overwrite later ones: first match wins
        if rule.need & ~present:
            continue  # no frame has every bit it needs
        need, forbid = np.uint64(rule.need), np.uint64(rule.forbid)
        codes[((facts & need) == need) & ((facts & forbid) == 0)] = PAGE_TYPES.index(rule.page_type)
    return codes
