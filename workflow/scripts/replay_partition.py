"""Stage 3, partitioned: one partition's share of every run of the sweep over one mix."""

from xpipe.io import run_logged
from xpipe.sim.load import load_domain_share
from xpipe.sim.partition import PARTS, Partition
from xpipe.sim.runs import RunSpec
from xpipe.sim.sweep import partition_sweep, write_tables


def main():
    part = Partition(int(snakemake.wildcards.part), snakemake.params.partitions)
    domains = [load_domain_share(s, p, r, part)
               for s, p, r in zip(snakemake.input.snapshots, snakemake.input.shares, snakemake.input.reads)]
    runs = [RunSpec.parse(r) for r in snakemake.params.runs]
    shares = partition_sweep(domains, runs, part, snakemake.params.domains_per_host)
    write_tables(shares, {t.name: snakemake.output[t.name] for t in PARTS})


run_logged(snakemake.log[0], main)
