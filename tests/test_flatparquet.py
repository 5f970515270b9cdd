"""The small Parquet writer (xpipe.flatparquet): what it writes, three independent readers read back."""

import duckdb
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from xpipe.flatparquet import ROW_GROUP_ROWS, categorical, constant, plain, write_table

NAMES = ("zero", "frei", "données")  # non-ASCII names survive the round trip


def columns(rows, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "label": constant("label", "guest-ü"),
        "snap": constant("snap", np.int32(-3)),
        "t": constant("t", np.float64(2.5)),
        "small": plain("small", rng.integers(-2**31, 2**31, rows).astype(np.int32)),
        "big": plain("big", rng.integers(-2**63, 2**63 - 1, rows, dtype=np.int64)),
        "unsigned": plain("unsigned", np.concatenate([np.array([2**64 - 1, 0], np.uint64),  # both ends
                                                      rng.integers(0, 2**64 - 1, rows, dtype=np.uint64)])[:rows]),
        "x": plain("x", rng.standard_normal(rows)),
        "kind": categorical("kind", NAMES, rng.integers(0, len(NAMES), rows).astype(np.uint8)),
    }


def expected(cols, rows):
    out = {}
    for name, c in cols.items():
        if c.values is not None:
            out[name] = c.values.tolist()
        elif c.codes is None:
            out[name] = [c.dictionary[0].item() if hasattr(c.dictionary[0], "item") else c.dictionary[0]] * rows
        else:
            out[name] = [c.dictionary[k] for k in c.codes]
    return out


@pytest.mark.parametrize(("rows", "group"), [(1000, 300), (7, ROW_GROUP_ROWS), (ROW_GROUP_ROWS + 1, ROW_GROUP_ROWS),
                                            (8, 8), (0, 4)],
                         ids=["groups-with-a-partial-last", "one-group", "one-past-a-group", "exact-groups", "empty"])
def test_polars_pyarrow_and_duckdb_read_back_every_value(tmp_path, rows, group):
    cols = columns(rows)
    path = tmp_path / "t.parquet"
    write_table(path, rows, list(cols.values()), {"note": "kept"}, row_group_rows=group)
    want = expected(cols, rows)

    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == rows and meta.num_row_groups == -(-rows // group)
    assert meta.metadata[b"note"] == b"kept"
    table = pq.read_table(path)
    assert table.column_names == list(cols)
    assert str(table.schema.field("unsigned").type) == "uint64"
    assert table.to_pydict() == want

    df = pl.read_parquet(path)
    assert df.schema == pl.Schema({"label": pl.String, "snap": pl.Int32, "t": pl.Float64, "small": pl.Int32,
                                   "big": pl.Int64, "unsigned": pl.UInt64, "x": pl.Float64, "kind": pl.String})
    assert df.to_dict(as_series=False) == want

    got = duckdb.sql(f"SELECT * FROM read_parquet('{path}')").fetchall()
    assert got == list(zip(*want.values(), strict=True))


def test_arrow_schema_metadata_restores_an_enum(tmp_path):
    want = pl.DataFrame({"kind": ["frei", "zero", "frei"]}, schema={"kind": pl.Enum(NAMES)})
    want.write_parquet(tmp_path / "polars.parquet")
    arrow_schema = pl.read_parquet_metadata(tmp_path / "polars.parquet")["ARROW:schema"]
    write_table(tmp_path / "t.parquet", 3, [categorical("kind", NAMES, np.array([1, 0, 1], np.uint8))],
                {"ARROW:schema": arrow_schema})
    assert pl.read_parquet(tmp_path / "t.parquet").equals(want)


def test_many_columns_and_metadata_entries(tmp_path):
    """Thrift lists of 15 or more items take a longer header."""
    cols = [plain(f"c{i}", np.arange(3, dtype=np.int64) * i) for i in range(20)]
    meta = {f"k{i}": f"v{i}" for i in range(16)}
    write_table(tmp_path / "t.parquet", 3, cols, meta)
    assert pq.read_table(tmp_path / "t.parquet").to_pydict() == {f"c{i}": [0, i, 2 * i] for i in range(20)}
    assert {k.decode(): v.decode() for k, v in pq.ParquetFile(tmp_path / "t.parquet").metadata.metadata.items()} == meta


def test_bad_columns_are_refused(tmp_path):
    with pytest.raises(ValueError, match="column a: 2 rows, expected 3"):
        write_table(tmp_path / "t.parquet", 3, [plain("a", np.zeros(2, np.int64))])
    with pytest.raises(ValueError, match="no Parquet type for numpy uint16; expected one of int32, int64"):
        write_table(tmp_path / "t.parquet", 2, [plain("a", np.zeros(2, np.uint16))])
    with pytest.raises(ValueError, match="column a: expected 1 to 256 names, got 300"):
        categorical("a", [str(i) for i in range(300)], np.zeros(1, np.uint8))
    with pytest.raises(ValueError, match="column a: expected 1 to 256 names, got 0"):
        categorical("a", [], np.zeros(1, np.uint8))
    with pytest.raises(ValueError, match="column a: expected uint8 codes, got int64"):
        categorical("a", ["x"], np.array([256, -1]))
    with pytest.raises(ValueError, match="column a: code 2 but only 2 names"):
        categorical("a", ["x", "y"], np.array([0, 2], np.uint8))
    with pytest.raises(ValueError, match=r"column a: expected one value per row, got shape \(2, 2\)"):
        write_table(tmp_path / "t.parquet", 2, [plain("a", np.zeros((2, 2), np.int64))])
    with pytest.raises(ValueError, match="column names must differ"):
        write_table(tmp_path / "t.parquet", 1, [constant("a", "x"), constant("a", "y")])
    with pytest.raises(ValueError, match="row_group_rows must be positive, got 0"):
        write_table(tmp_path / "t.parquet", 1, [constant("a", "x")], row_group_rows=0)
