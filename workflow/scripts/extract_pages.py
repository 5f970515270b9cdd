"""Stage 2: page types for one domain's frames."""

import polars as pl

from xpipe.extract import page_types
from xpipe.io import run_logged, write_parquet


def main():
    disk = pl.scan_parquet(snakemake.input.disk) if snakemake.input.disk else None
    pages = page_types(pl.scan_parquet(snakemake.input.frames), disk).collect()
    write_parquet(pages, snakemake.output.pages)


run_logged(snakemake.log[0], main)
