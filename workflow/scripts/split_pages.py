"""Stage 3, partitioned: one domain's pages split by partition, so that each partition's job reads its own."""

from xpipe.io import run_logged
from xpipe.sim.load import split_pages


def main():
    split_pages(snakemake.input.pages, snakemake.output.snapshots, list(snakemake.output.shares))


run_logged(snakemake.log[0], main)
