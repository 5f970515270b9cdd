"""The results database: one DuckDB file over every stage's Parquet.

Run results (summary, timeline, types, capacity, domains) are copied in, so
the file answers on its own; the large per-page tables (frames, pages, reads)
are views over their Parquet files, with paths relative to the project
folder so the results can be moved as a whole. `connect` resolves them from
any working directory; a plain `duckdb results/xpipe.duckdb` must run in the
project folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from xpipe.io import atomic_path
from xpipe.schemas import FRAMES, PAGES, READS, REQUESTS

#: Views over the per-page Parquet files: each table's path, every {wildcard}
#: a glob, relative to the project folder.
VIEWS = {t.name: re.sub(r"\{\w+\}", "*", t.where) for t in (FRAMES, REQUESTS, PAGES, READS)}


def build_database(out: str | Path, tables: dict[str, list[str]]) -> None:
    """Write ``out`` with one table per key of ``tables`` (a list of Parquet files each)."""
    with atomic_path(out) as tmp:
        con = duckdb.connect(str(tmp))
        try:
            for name, files in tables.items():
                con.sql(f"CREATE TABLE {name} AS SELECT * FROM read_parquet($files, union_by_name = true)",
                        params={"files": [str(f) for f in files]})
            # the figures compare runs that replayed every snapshot; sparser ones have their own
            con.sql("CREATE VIEW summary_every_snapshot AS SELECT * FROM summary WHERE snapshot_every = 1")
            for name, glob in VIEWS.items():
                con.sql(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{glob}', union_by_name = true)")
        finally:
            con.close()


def connect(db: str | Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection whose views find their Parquet wherever the caller runs."""
    db = Path(db).resolve()
    con = duckdb.connect(str(db), read_only=True)
    # the database sits in <project>/results/; the views' globs start at <project>
    con.execute("SET file_search_path = ?", [str(db.parent.parent)])
    return con


def query(db: str | Path, sql: str):
    """Run ``sql`` read-only against the database; returns a polars DataFrame."""
    con = connect(db)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()
