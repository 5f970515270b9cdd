"""UMass memory traces (Memory Buddies, Wood et al., VEE 2009; UMass Trace Repository).

The trace set's readme describes each file as an ASCII header (the OS type and
the list of running processes) followed by binary data: one 32-bit hash per
page of the machine's memory, as consecutive 32-bit values. Nothing marks where
the header ends, so it ends here at the first line that is not text: lines of
printable ASCII (and tabs) each ending in a newline. The rest of the file is
the hash list, read little-endian (the traced machines were x86), page 0 first.
The readme notes that some files carry a Bloom filter after the hash list; the
file says nothing of where it starts, so such a file must be cut to its hash
list first (``head -c``), or it is read as more pages.

Contents are 32-bit hashes: compared only with hashes of the same kind, and with
a chance of false matches that grows with the number of pages (README). Which
hash is the zero page is not documented, so it is found from the data: the most
frequent hash of the file, as a machine's memory holds more zero pages than
copies of any other page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xpipe.errors import InputError
from xpipe.hashing import ZERO_HASH
from xpipe.readers.compact import read_bytes

HASH_BYTES = 4
#: One header line: printable ASCII or tabs, ended by a newline (a CR before it is text too).
_TEXT_LINE = re.compile(rb"[\t\r\x20-\x7e]*\n")
_EXPECTED = ("expected a UMass memory trace: an ASCII header (OS, processes), then one 32-bit "
             "hash per page")


@dataclass
class UmassTrace:
    header: list[str]  # the header's lines, without their newlines
    hashes_at: int  # byte offset of the hash list
    hashes: np.ndarray  # uint32, one per page, page 0 first


def read_umass_trace(path: str | Path) -> UmassTrace:
    """The header and hash list of a trace file; InputError names the offset of what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, f"{_EXPECTED}; {'not a regular file' if path.exists() else 'no such file'}")
    data = read_bytes(path)
    at, header = 0, []
    while (m := _TEXT_LINE.match(data, at)) is not None:
        header.append(m.group()[:-1].rstrip(b"\r").decode("ascii"))
        at = m.end()
    if not header:
        raise InputError(path, "offset 0", f"{_EXPECTED}; found no header line")
    body = len(data) - at
    if body == 0:
        raise InputError(path, f"offset {at}", f"{_EXPECTED}; the file ends after its header (no hash)")
    if body % HASH_BYTES:
        raise InputError(path, f"offset {len(data) - body % HASH_BYTES}",
                         f"{_EXPECTED}; the hash list from offset {at} ends in {body % HASH_BYTES} "
                         f"trailing bytes, not whole 32-bit hashes (a Bloom filter after the list? cut it off)")
    return UmassTrace(header, at, np.frombuffer(data, dtype="<u4", offset=at).astype(np.uint32))


def read_umass(path: Path, threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The snapshot-reader interface (xpipe.readers.registry): (frame, hash) of every page.

    A hash is the 32-bit value widened to 64 bits; the file's most frequent hash
    stands for the zero page (xpipe.hashing.ZERO_HASH). ``threads`` is unused:
    there is nothing to hash.
    """
    hashes = read_umass_trace(path).hashes
    values, counts = np.unique(hashes, return_counts=True)
    zero = values[np.argmax(counts)]
    wide = np.where(hashes == zero, ZERO_HASH, hashes.astype(np.uint64)).astype(np.uint64)
    return np.arange(len(hashes), dtype=np.int64), wide
