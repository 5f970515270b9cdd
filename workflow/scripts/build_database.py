"""Stage 4: results/xpipe.duckdb over every stage's Parquet."""

from xpipe.io import run_logged
from xpipe.report.db import build_database


def main():
    tables = {k: list(snakemake.input[k]) for k in ("summary", "timeline", "types", "capacity", "domains")}
    build_database(snakemake.output.db, tables)


run_logged(snakemake.log[0], main)
