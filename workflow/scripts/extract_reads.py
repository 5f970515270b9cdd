"""Stage 2: the content hash of every 4 KiB block one domain read."""

import polars as pl

from xpipe.extract import read_hashes
from xpipe.io import run_logged, write_parquet


def main():
    # without a disk the trace carries its contents (the manifest allows nothing else)
    disk = pl.scan_parquet(snakemake.input.disk) if snakemake.input.disk else None
    reads = read_hashes(pl.scan_parquet(snakemake.input.requests), disk).collect()
    write_parquet(reads, snakemake.output.reads)


run_logged(snakemake.log[0], main)
