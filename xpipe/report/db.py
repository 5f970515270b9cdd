"""The results database: one DuckDB file per experiment.

The run tables (summary, timeline, types, prefixes) and the domains of the
experiment's captures are copied in, so the file answers on its own. The
per-page tables (frames, requests, pages, reads) are views over exactly the
Parquet files of the experiment's captures, with a ``capture`` column, named
relative to the project folder so the results can be moved as a whole:
`connect` resolves them from any working directory; a plain `duckdb
results/NAME/xpipe.duckdb` must run in the project folder.

Result facts that queries share are defined here once, as macros and views
(see VIEWS); the figures' and tables' SQL uses them instead of copies.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from xpipe.hashing import PAGES_PER_MIB
from xpipe.io import atomic_path
from xpipe.sim.tables import RUN_KEY

_KEY = ", ".join(c.name for c in RUN_KEY)

#: name -> (what it is, its SQL), created in this order after the tables.
VIEWS = {
    "mib": ("macro: 4 KiB pages -> MiB", f"CREATE MACRO mib(pages) AS pages / {PAGES_PER_MIB}.0"),
    "per_time": (
        "host totals per run and snapshot time: footprint (private + shared pages mapped), with the "
        "whole reserved area, and without sharing; pages",
        f"""CREATE VIEW per_time AS
        SELECT {_KEY}, time_s,
            sum(private_pages) AS private_pages,
            sum(private_pages) + any_value(area_mapped) AS footprint,
            sum(private_pages) + greatest(any_value(area_reserved), any_value(area_used)) AS footprint_reserved,
            sum(private_pages) + sum(shared_mapped) AS footprint_none
        FROM timeline GROUP BY ALL""",
    ),
    "summary_every_snapshot": (
        "summary rows of runs that replayed every snapshot (sparser runs have the snapshot_interval figure)",
        "CREATE VIEW summary_every_snapshot AS SELECT * FROM summary WHERE snapshot_every = 1",
    ),
    "headline": (
        "one row per mix and run at every snapshot, at the smallest host size (savings do not depend on it)",
        """CREATE VIEW headline AS SELECT * FROM summary_every_snapshot
        WHERE host_mib = (SELECT min(host_mib) FROM summary)""",
    ),
    "shown_runs": (
        "the runs a figure shows when it cannot show every run: every run of every policy, but dsa only "
        "at the mix's largest area with the first eviction rule run (both admit_zero values)",
        """CREATE VIEW shown_runs AS
        WITH dsa_at_largest AS (
            SELECT * FROM headline WHERE policy = 'dsa'
            QUALIFY area_mib = max(area_mib) OVER (PARTITION BY mix)
        ),
        first_rule AS (SELECT mix, arg_min(eviction, run_order) AS eviction FROM dsa_at_largest GROUP BY mix)
        SELECT h.* FROM headline h
        WHERE h.policy <> 'dsa'
           OR (h.mix, h.run) IN (SELECT (d.mix, d.run) FROM dsa_at_largest d JOIN first_rule f
                                 ON d.mix = f.mix AND d.eviction = f.eviction)""",
    ),
}


def _per_page_view(name: str, files: dict[str, list[str]]) -> str:
    parts = [f"SELECT '{c}' AS capture, * FROM read_parquet({[str(f) for f in fs]!r}, union_by_name = true)"
             for c, fs in sorted(files.items()) if fs]
    return f"CREATE VIEW {name} AS " + " UNION ALL ".join(parts)


def build_database(out: str | Path, tables: dict[str, list[str]], per_page: dict[str, dict[str, list[str]]]) -> None:
    """Write ``out`` with one table per key of ``tables`` (a list of Parquet files each),
    the shared views, and a view per key of ``per_page`` (capture -> its Parquet files)."""
    with atomic_path(out) as tmp:
        con = duckdb.connect(str(tmp))
        try:
            for name, files in tables.items():
                con.sql(f"CREATE TABLE {name} AS SELECT * FROM read_parquet($files, union_by_name = true)",
                        params={"files": [str(f) for f in files]})
            for _, sql in VIEWS.values():
                con.sql(sql)
            for name, files in per_page.items():
                if any(files.values()):
                    con.sql(_per_page_view(name, files))
        finally:
            con.close()


def connect(db: str | Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection whose views find their Parquet wherever the caller runs."""
    db = Path(db).resolve()
    con = duckdb.connect(str(db), read_only=True)
    # the database sits in <project>/results/<experiment>/; the views' paths start at <project>
    # (a database moved elsewhere keeps its tables; its views then resolve from the working folder)
    project = db.parents[2] if db.parent.parent.name == "results" else Path.cwd()
    con.execute("SET file_search_path = ?", [str(project)])
    return con


def query(db: str | Path, sql: str):
    """Run ``sql`` read-only against the database; returns a polars DataFrame."""
    con = connect(db)
    try:
        return con.sql(sql).pl()
    finally:
        con.close()
