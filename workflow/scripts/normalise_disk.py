"""Stage 1: one disk image's block hashes into Parquet."""

from xpipe.io import run_logged, write_parquet
from xpipe.normalise import normalise_disk
from xpipe.readers.manifest import load_manifest


def main():
    manifest = load_manifest(snakemake.params.manifest)
    write_parquet(normalise_disk(manifest.disks[snakemake.wildcards.disk], snakemake.threads), snakemake.output.blocks)


run_logged(snakemake.log[0], main)
