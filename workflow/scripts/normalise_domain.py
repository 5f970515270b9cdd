"""Stage 1: one domain's snapshots and read trace into Parquet."""

import logging

import polars as pl

from xpipe.hashing import PAGE_SIZE
from xpipe.io import run_logged, write_parquet
from xpipe.normalise import normalise_frames, normalise_requests, skipped_table
from xpipe.readers.manifest import load_manifest


def main():
    domain = load_manifest(snakemake.params.manifest).domain(snakemake.wildcards.domain)
    disk = snakemake.input.disk  # the disk's BLOCKS table, one row per block; none without a disk
    disk_bytes = pl.scan_parquet(disk).select(pl.len()).collect().item() * PAGE_SIZE if disk else None
    skipped = {} if snakemake.params.lenient else None
    write_parquet(normalise_requests(domain, disk_bytes, skipped), snakemake.output.requests)
    if skipped:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items()))
        logging.getLogger("xpipe.normalise").warning("domain %s: %s: skipped %s", domain.id, domain.reads, counts)
    write_parquet(skipped_table(domain, skipped or {}), snakemake.output.skipped)
    write_parquet(normalise_frames(domain, snakemake.threads, snakemake.params.keep_every), snakemake.output.frames)


run_logged(snakemake.log[0], main)
