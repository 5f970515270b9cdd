"""Stage 4: the summary table as CSV and Markdown."""

from pathlib import Path

from xpipe.io import run_logged
from xpipe.report.db import query
from xpipe.report.tables import write_table


def main():
    rows = query(snakemake.input.db, Path(snakemake.input.sql).read_text())
    write_table(rows, snakemake.output.csv, snakemake.output.md)


run_logged(snakemake.log[0], main)
