"""Stage 3: replay one mix under every run of the sweep, and summarise each."""

from xpipe.io import run_logged
from xpipe.sim.load import load_domain
from xpipe.sim.runs import RunSpec
from xpipe.sim.sweep import replay_sweep


def main():
    domains = [load_domain(p, r) for p, r in zip(snakemake.input.pages, snakemake.input.reads)]
    runs = [RunSpec.parse(r) for r in snakemake.params.runs]
    outputs = {k: snakemake.output[k] for k in ("summary", "timeline", "types", "prefixes")}
    replay_sweep(domains, runs, snakemake.wildcards.mix, snakemake.params.capture, outputs,
                 snakemake.params.domains_per_host, snakemake.params.host_mib, snakemake.params.synthetic)


run_logged(snakemake.log[0], main)
