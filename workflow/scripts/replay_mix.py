"""Stage 3: replay one mix under every run of the sweep, and summarise each."""

from xpipe.io import run_logged
from xpipe.sim.load import load_domain
from xpipe.sim.sweep import replay_sweep


def main():
    domains = [load_domain(p, r) for p, r in zip(snakemake.input.pages, snakemake.input.reads)]
    outputs = {
        run: {k: snakemake.output[k][i] for k in ("timeline", "types", "capacity", "summary")}
        for i, run in enumerate(snakemake.params.runs)
    }
    replay_sweep(domains, snakemake.wildcards.mix, outputs, snakemake.params.capacity,
                 snakemake.params.host_mib, snakemake.params.synthetic)


run_logged(snakemake.log[0], main)
