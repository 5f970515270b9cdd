"""Stage 2: the content hash of every 4 KiB block one domain read."""

import polars as pl

from xpipe.extract import read_hashes
from xpipe.io import run_logged, write_parquet
from xpipe.schemas import READS


def main():
    requests = pl.scan_parquet(snakemake.input.requests)
    if snakemake.input.disk:
        reads = read_hashes(requests, pl.scan_parquet(snakemake.input.disk)).collect()
    else:
        reads = pl.DataFrame(schema=READS.schema)
    write_parquet(reads, snakemake.output.reads)


run_logged(snakemake.log[0], main)
