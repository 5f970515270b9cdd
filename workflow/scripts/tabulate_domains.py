"""Stage 1: the capture's domains table."""

import polars as pl

from xpipe.io import run_logged, write_parquet
from xpipe.normalise import domains_table
from xpipe.readers.manifest import load_manifest


def main():
    reads = {}
    for path in snakemake.input.requests:
        r = pl.read_parquet(path, columns=["domain", "offset", "bytes"])
        blocks = ((r["offset"] + r["bytes"] - 1) // 4096 - r["offset"] // 4096 + 1).sum() if len(r) else 0
        if len(r):
            reads[r["domain"][0]] = int(blocks)
    manifest = load_manifest(snakemake.input.manifest)
    write_parquet(domains_table(snakemake.wildcards.capture, manifest, reads), snakemake.output.domains)


run_logged(snakemake.log[0], main)
