"""Write a SYNTHETIC capture bundle (xpipe.synthetic) from the config's parameters."""

from pathlib import Path

from xpipe.io import run_logged
from xpipe.synthetic import write_synthetic_bundle


def main():
    write_synthetic_bundle(Path(snakemake.output.manifest).parent, snakemake.params.spec)


run_logged(snakemake.log[0], main)
