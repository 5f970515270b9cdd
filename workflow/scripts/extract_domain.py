"""Stage 2: page types for one domain's frames, and the content hash of every 4 KiB block it read."""

import polars as pl

from xpipe.extract import page_types, read_hashes
from xpipe.io import run_logged, write_parquet


def main():
    # without a disk the trace carries its contents (the manifest allows nothing else)
    disk = pl.scan_parquet(snakemake.input.disk) if snakemake.input.disk else None
    write_parquet(page_types(pl.scan_parquet(snakemake.input.frames), disk).collect(), snakemake.output.pages)
    write_parquet(read_hashes(pl.scan_parquet(snakemake.input.requests), disk).collect(), snakemake.output.reads)


run_logged(snakemake.log[0], main)
