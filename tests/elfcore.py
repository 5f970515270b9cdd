"""A minimal ELF64 core file, as QEMU's dump-guest-memory writes them, for tests."""

import struct


def elf_core(segments, header_pad=0):
    """A minimal ELF64 core: a PT_NOTE then one PT_LOAD per (paddr, data); data
    starts right after the headers (+ header_pad), so offsets need not be page-aligned."""
    phnum = len(segments) + 1
    off = 64 + 56 * phnum + header_pad
    header = bytearray(64)
    header[:16] = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9)
    struct.pack_into("<HHIQQQIHHHHHH", header, 16, 4, 62, 1, 0, 64, 0, 0, 64, 56, phnum, 0, 0, 0)
    ph = struct.pack("<IIQQQQQQ", 4, 0, off, 0, 0, 0, 0, 0)  # PT_NOTE, empty
    body = b""
    for paddr, data in segments:
        ph += struct.pack("<IIQQQQQQ", 1, 7, off + len(body), 0, paddr, len(data), len(data), 0)
        body += data
    return bytes(header) + ph + bytes(header_pad) + body
