"""The capture's domains table, with each domain's 4 KiB block reads (stage 2's READS rows)
and the bad trace records lenient reading skipped (stage 1's SKIPPED rows); and the host's
KSM as the capture recorded it beside the snapshots."""

import polars as pl

from xpipe.io import run_logged, write_parquet
from xpipe.normalise import domains_table, ksm_at_capture_table
from xpipe.readers.manifest import load_manifest


def main():
    manifest = load_manifest(snakemake.input.manifest)
    reads = {d.id: pl.scan_parquet(path).select(pl.len()).collect().item()
             for d, path in zip(manifest.domains, snakemake.input.reads)}
    skipped = {d.id: pl.read_parquet(path)["records"].sum()
               for d, path in zip(manifest.domains, snakemake.input.skipped)}
    capture = snakemake.wildcards.capture
    write_parquet(domains_table(capture, manifest, reads, skipped, snakemake.params.keep_every),
                  snakemake.output.domains)
    write_parquet(ksm_at_capture_table(capture, manifest), snakemake.output.ksm)


run_logged(snakemake.log[0], main)
