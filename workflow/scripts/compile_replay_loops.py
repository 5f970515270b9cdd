"""Compile the replay's numba loops before any replay job (xpipe.sim.warmup)."""

import logging
from pathlib import Path

from xpipe.io import run_logged
from xpipe.sim.warmup import compile_loops


def main():
    runs = compile_loops()
    logging.getLogger("xpipe.sim.warmup").info("replay loops compiled (%d runs of a tiny mix)", runs)
    Path(snakemake.output.done).write_text("compiled\n")


run_logged(snakemake.log[0], main)
