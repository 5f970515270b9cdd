"""A small Parquet writer for flat tables of required columns, without polars or pyarrow.

`xpipe hash` writes its page table with it: importing polars or pyarrow costs
0.15-0.2 s, about as long as hashing a 4 GiB dump on two cores, and the
command is meant to run at the speed of the hash (docs/benchmarks.md).
Everything else in xpipe writes Parquet with polars (xpipe.io.write_parquet).

It writes the subset of the format (https://parquet.apache.org/docs/file-format/)
that such a table needs: uncompressed data pages (format v1), no statistics,
one page per column per row group; numbers PLAIN-encoded, strings and
constants as a dictionary page and RLE_DICTIONARY indices. The footer is
Thrift's compact protocol. An ``ARROW:schema`` entry in the metadata lets
Arrow-based readers (polars, pyarrow) restore types Parquet has no word for,
such as polars' Enum; DuckDB and other readers go by the Parquet types.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

MAGIC = b"PAR1"
#: Rows per row group: readers split work by row group; 2 MiB per 8-byte column.
ROW_GROUP_ROWS = 1 << 18

# parquet.thrift enums
_BYTE_ARRAY, _INT32, _INT64, _DOUBLE = 6, 1, 2, 5
_REQUIRED = 0
_UTF8, _UINT_64 = 0, 14  # ConvertedType
_PLAIN, _RLE, _RLE_DICTIONARY = 0, 3, 8  # Encoding
_UNCOMPRESSED = 0
_DATA_PAGE, _DICTIONARY_PAGE = 0, 2

# Thrift's compact protocol: a field header holds the id delta and the type,
# integers are zigzag varints, a bool field's value is its type.
_TRUE, _FALSE, _BYTE, _I32, _I64, _BINARY, _LIST, _STRUCT = 1, 2, 3, 5, 6, 8, 9, 12
_BOOL = -1  # our tag for a bool field (written as _TRUE or _FALSE)


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _value(ttype: int, v) -> bytes:
    if ttype in (_I32, _I64):
        return _varint(_zigzag(v))
    if ttype == _BYTE:
        return struct.pack("<b", v)
    if ttype == _BINARY:
        b = v.encode() if isinstance(v, str) else v
        return _varint(len(b)) + b
    if ttype == _STRUCT:
        return v
    if ttype == _LIST:
        elem, items = v
        head = bytes([(len(items) << 4) | elem]) if len(items) < 15 else bytes([0xF0 | elem]) + _varint(len(items))
        return head + b"".join(_value(elem, i) for i in items)
    raise ValueError(f"thrift type {ttype}")


def _struct(*fields: tuple[int, int, object]) -> bytes:
    """A struct of (field id, type, value) in ascending id order; None values are left out."""
    out, last = bytearray(), 0
    for fid, ttype, v in fields:
        if v is None:
            continue
        assert 0 < fid - last <= 15, "field ids ascend in small steps"
        if ttype == _BOOL:
            out.append(((fid - last) << 4) | (_TRUE if v else _FALSE))
        else:
            out.append(((fid - last) << 4) | ttype)
            out += _value(ttype, v)
        last = fid
    out.append(0)  # stop
    return bytes(out)


def _union(fid: int, value: bytes) -> bytes:
    return _struct((fid, _STRUCT, value))


@dataclass(frozen=True)
class _Type:
    physical: int
    numpy: str | None  # little-endian dtype of PLAIN values; None: length-prefixed UTF-8
    converted: int | None = None
    logical: bytes | None = None  # an encoded LogicalType union


_TYPES = {  # numpy dtype name (or "str") -> Parquet type
    "int32": _Type(_INT32, "<i4"),
    "int64": _Type(_INT64, "<i8"),
    "uint64": _Type(_INT64, "<u8", _UINT_64, _union(10, _struct((1, _BYTE, 64), (2, _BOOL, False)))),
    "float64": _Type(_DOUBLE, "<f8"),
    "str": _Type(_BYTE_ARRAY, None, _UTF8, _union(1, _struct())),
}


@dataclass(frozen=True)
class Column:
    """One column: ``values`` (one per row), or ``dictionary`` and ``codes`` (each row's
    index into it, uint8; None when every row holds ``dictionary[0]``)."""

    name: str
    values: np.ndarray | None = None
    dictionary: Sequence | None = None
    codes: np.ndarray | None = None

    @property
    def type(self) -> _Type:
        if self.values is not None:
            return _type_of(self.values.dtype.name)
        first = self.dictionary[0]
        return _type_of("str" if isinstance(first, str) else np.asarray(first).dtype.name)


def plain(name: str, values: np.ndarray) -> Column:
    """A column of numbers (int32, int64, uint64 or float64), one per row."""
    return Column(name, values=values)


def constant(name: str, value) -> Column:
    """A column whose every row holds ``value`` (a str or a numpy scalar, whose dtype is the column's)."""
    return Column(name, dictionary=(value,))


def categorical(name: str, names: Sequence[str], codes: np.ndarray) -> Column:
    """A string column stored as ``names[codes[i]]`` for row i (``codes``: uint8)."""
    if not 0 < len(names) <= 256:
        raise ValueError(f"column {name}: expected 1 to 256 names, got {len(names)}")
    if codes.dtype != np.uint8:
        raise ValueError(f"column {name}: expected uint8 codes, got {codes.dtype}")
    if len(codes) and int(codes.max()) >= len(names):
        raise ValueError(f"column {name}: code {int(codes.max())} but only {len(names)} names")
    return Column(name, dictionary=tuple(names), codes=codes)


def write_table(path: str | Path, rows: int, columns: Sequence[Column],
                metadata: dict[str, str] | None = None, row_group_rows: int = ROW_GROUP_ROWS) -> None:
    """Write ``columns`` (``rows`` rows each) to ``path`` as one Parquet file.

    ``metadata``: the file's key-value metadata (e.g. ``ARROW:schema``).
    """
    if len({c.name for c in columns}) != len(columns):
        raise ValueError(f"column names must differ, got {[c.name for c in columns]}")
    for c in columns:
        if c.values is not None and c.values.ndim != 1:
            raise ValueError(f"column {c.name}: expected one value per row, got shape {c.values.shape}")
        n = len(c.values) if c.values is not None else len(c.codes) if c.codes is not None else rows
        if n != rows:
            raise ValueError(f"column {c.name}: {n} rows, expected {rows}")
    if row_group_rows < 1:
        raise ValueError(f"row_group_rows must be positive, got {row_group_rows}")
    with open(path, "wb") as f:
        f.write(MAGIC)
        groups = [_write_row_group(f, columns, start, min(start + row_group_rows, rows))
                  for start in range(0, rows, row_group_rows)]
        footer = _file_metadata(columns, rows, groups, metadata or {})
        f.write(footer)
        f.write(struct.pack("<I", len(footer)))
        f.write(MAGIC)


def _type_of(name: str) -> _Type:
    try:
        return _TYPES[name]
    except KeyError:
        raise ValueError(f"no Parquet type for numpy {name}; expected one of {', '.join(_TYPES)}") from None


def _plain_values(values, t: _Type) -> bytes | memoryview:
    if t.numpy is None:
        out = bytearray()
        for v in values:
            b = str(v).encode()
            out += struct.pack("<I", len(b)) + b
        return bytes(out)
    return memoryview(np.ascontiguousarray(values, dtype=t.numpy)).cast("B")


def _dictionary_indices(codes: np.ndarray | None, rows: int) -> bytes | bytearray:
    """RLE_DICTIONARY data: the bit width, then one run (RLE/bit-packing hybrid)."""
    if codes is None:  # one RLE run of index 0, in 1-bit values
        return bytes([1]) + _varint(rows << 1) + b"\0"
    groups = -(-rows // 8)  # a bit-packed run of 8-bit values is the bytes themselves, in groups of 8
    padded = bytearray(groups * 8)
    padded[:rows] = np.ascontiguousarray(codes, dtype=np.uint8).tobytes()
    return bytes([8]) + _varint((groups << 1) | 1) + padded


def _page(f: BinaryIO, kind: int, data, values: int, encoding: int) -> None:
    """Write one page: its header, then its (uncompressed) data."""
    if len(data) >= 1 << 31:  # page sizes are i32
        raise ValueError(f"a page of {len(data)} bytes is over Parquet's 2 GiB limit: use smaller row groups")
    if kind == _DATA_PAGE:  # required columns: no repetition or definition levels in the data
        field, header = 5, _struct((1, _I32, values), (2, _I32, encoding), (3, _I32, _RLE), (4, _I32, _RLE))
    else:
        field, header = 7, _struct((1, _I32, values), (2, _I32, encoding))
    f.write(_struct((1, _I32, kind), (2, _I32, len(data)), (3, _I32, len(data)), (field, _STRUCT, header)))
    f.write(data)


def _write_row_group(f: BinaryIO, columns: Sequence[Column], start: int, stop: int) -> bytes:
    rows, chunks, total = stop - start, [], 0
    for c in columns:
        t = c.type
        chunk_start = f.tell()
        if c.values is not None:
            dict_offset, encodings = None, [_PLAIN]
            data, encoding = _plain_values(c.values[start:stop], t), _PLAIN
        else:
            dict_offset, encodings = chunk_start, [_PLAIN, _RLE_DICTIONARY]
            _page(f, _DICTIONARY_PAGE, _plain_values(c.dictionary, t), len(c.dictionary), _PLAIN)
            codes = None if c.codes is None else c.codes[start:stop]
            data, encoding = _dictionary_indices(codes, rows), _RLE_DICTIONARY
        data_offset = f.tell()
        _page(f, _DATA_PAGE, data, rows, encoding)
        size = f.tell() - chunk_start
        meta = _struct((1, _I32, t.physical), (2, _LIST, (_I32, encodings)), (3, _LIST, (_BINARY, [c.name])),
                       (4, _I32, _UNCOMPRESSED), (5, _I64, rows), (6, _I64, size), (7, _I64, size),
                       (9, _I64, data_offset), (11, _I64, dict_offset))
        chunks.append(_struct((2, _I64, 0), (3, _STRUCT, meta)))  # 0: no metadata outside the footer
        total += size
    return _struct((1, _LIST, (_STRUCT, chunks)), (2, _I64, total), (3, _I64, rows))


def _file_metadata(columns: Sequence[Column], rows: int, groups: list[bytes], metadata: dict[str, str]) -> bytes:
    schema = [_struct((4, _BINARY, "schema"), (5, _I32, len(columns)))]
    for c in columns:
        t = c.type
        schema.append(_struct((1, _I32, t.physical), (3, _I32, _REQUIRED), (4, _BINARY, c.name),
                              (6, _I32, t.converted), (10, _STRUCT, t.logical)))
    kv = [_struct((1, _BINARY, k), (2, _BINARY, v)) for k, v in metadata.items()]
    return _struct((1, _I32, 1), (2, _LIST, (_STRUCT, schema)), (3, _I64, rows), (4, _LIST, (_STRUCT, groups)),
                   (5, _LIST, (_STRUCT, kv) if kv else None), (6, _BINARY, "xpipe"))
