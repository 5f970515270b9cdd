"""Stage 4: the experiment's results database over its run tables and captures."""

from xpipe.io import run_logged
from xpipe.report.db import build_database


def main():
    tables = {k: list(snakemake.input[k]) for k in ("summary", "timeline", "types", "prefixes", "domains", "ksm_at_capture")}
    build_database(snakemake.output.db, tables, snakemake.params.per_page)


run_logged(snakemake.log[0], main)
