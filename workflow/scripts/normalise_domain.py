"""Stages 1 and 2 of one domain: its snapshots and read trace into Parquet (frames, requests),
then its page types and the content hash of every block it read (pages, reads)."""

import logging

import polars as pl

from xpipe.extract import page_types, read_hashes
from xpipe.hashing import PAGE_SIZE
from xpipe.io import run_logged, write_parquet
from xpipe.normalise import normalise_frames, normalise_requests, skipped_table
from xpipe.readers.manifest import load_manifest


def main():
    domain = load_manifest(snakemake.params.manifest).domain(snakemake.wildcards.domain)
    disk = snakemake.input.disk  # the disk's BLOCKS table, one row per block; none without a disk
    disk_bytes = pl.scan_parquet(disk).select(pl.len()).collect().item() * PAGE_SIZE if disk else None
    skipped = {} if snakemake.params.lenient else None
    requests = normalise_requests(domain, disk_bytes, skipped)
    write_parquet(requests, snakemake.output.requests)
    if skipped:
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(skipped.items()))
        logging.getLogger("xpipe.normalise").warning("domain %s: %s: skipped %s", domain.id, domain.reads, counts)
    write_parquet(skipped_table(domain, skipped or {}), snakemake.output.skipped)
    frames = normalise_frames(domain, snakemake.threads, snakemake.params.keep_every)
    write_parquet(frames, snakemake.output.frames)
    # stage 2; without a disk the trace carries its contents (the manifest allows nothing else)
    blocks = pl.scan_parquet(disk) if disk else None
    write_parquet(page_types(frames.lazy(), blocks).collect(), snakemake.output.pages)
    write_parquet(read_hashes(requests.lazy(), blocks).collect(), snakemake.output.reads)


run_logged(snakemake.log[0], main)
