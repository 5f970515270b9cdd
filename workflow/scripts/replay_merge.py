"""Stage 3, partitioned: the four run tables of one mix from every partition's share."""

import polars as pl

from xpipe.io import run_logged
from xpipe.sim.partition import PARTS
from xpipe.sim.runs import RunSpec
from xpipe.sim.sweep import merge_sweep, write_tables


def main():
    shares = [{t.name: t.conform(pl.read_parquet(snakemake.input[t.name][i])) for t in PARTS}
              for i in range(snakemake.params.partitions)]
    runs = [RunSpec.parse(r) for r in snakemake.params.runs]
    p = snakemake.params
    tables = merge_sweep(shares, runs, snakemake.wildcards.mix, p.capture, p.domains, p.domains_per_host,
                         p.host_mib, p.synthetic)
    write_tables(tables, {k: snakemake.output[k] for k in ("summary", "timeline", "types", "prefixes")})


run_logged(snakemake.log[0], main)
