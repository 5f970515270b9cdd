"""Stage 4: one figure from its SQL query."""

from pathlib import Path

from xpipe.io import run_logged
from xpipe.report.db import query
from xpipe.report.figures import draw


def main():
    rows = query(snakemake.input.db, Path(snakemake.input.sql).read_text()).to_pandas()
    draw(snakemake.wildcards.figure, rows, snakemake.output.png)


run_logged(snakemake.log[0], main)
