"""Stage 1: one domain's snapshots and read trace into Parquet."""

from xpipe.io import run_logged, write_parquet
from xpipe.normalise import disk_blocks, normalise_frames, normalise_requests
from xpipe.readers.manifest import load_manifest


def main():
    domain = load_manifest(snakemake.params.manifest).domain(snakemake.wildcards.domain)
    disk_bytes = disk_blocks(domain.disk) * 4096 if domain.disk else None
    write_parquet(normalise_requests(domain, disk_bytes), snakemake.output.requests)
    write_parquet(normalise_frames(domain, snakemake.threads), snakemake.output.frames)


run_logged(snakemake.log[0], main)
