# Wiring only: the experiment the config describes (xpipe.experiment), each
# rule's code inputs (the xpipe modules its script imports) and the rules'
# input functions. What things mean lives in the package.
import os
import sys
from pathlib import Path

from xpipe.codeinputs import code_inputs
from xpipe.errors import InputError
from xpipe.experiment import Experiment
from xpipe.schemas import BLOCKS, DOMAINS, FRAMES, KSM_AT_CAPTURE, PAGES, READS, REQUESTS, SKIPPED
from xpipe.sim.partition import PAGE_SHARES, PARTS, SNAPSHOTS
from xpipe.sim.tables import PREFIXES, SUMMARY, TIMELINE, TYPES

# The project folder (the Snakefile's), named relative to the working directory
# so that results stay valid when the folder moves (snakemake -d DIR works too).
SRC = Path(os.path.relpath(workflow.basedir))

try:
    X = Experiment.load(config, SRC / "workflow/schemas/config.schema.yaml", workflow.overwrite_configfiles)
except InputError as e:  # one line naming the file and the key, not a stack
    sys.exit(f"xpipe: {e}")
RUNS = [r.run_id for r in X.runs]
# one figure per query file: workflow/sql/figures/NAME.sql, drawn by xpipe.report.figures.NAME
FIGURES = sorted(p.stem for p in (SRC / "workflow/sql/figures").glob("*.sql"))
PER_PAGE = (FRAMES, REQUESTS, PAGES, READS)


def code(script):
    """The script's xpipe modules, transitively: editing any of them reruns the rule."""
    return code_inputs(SRC / "workflow/scripts" / script, SRC)


def log(rule, *wildcards):
    """A shared-stage rule's log path (logs of an experiment's rules are under its folder)."""
    return os.path.join("results", "logs", rule, *("{%s}" % w for w in wildcards)) + ".log"


def bench(rule, *wildcards):
    return os.path.join("results", "benchmarks", rule, *("{%s}" % w for w in wildcards)) + ".tsv"


wildcard_constraints:
    capture=r"[A-Za-z0-9_.-]+",
    domain=r"[A-Za-z0-9_.-]+",
    disk=r"[A-Za-z0-9_.-]+",
    mix=r"[A-Za-z0-9_.-]+",
    preset=r"[A-Za-z0-9_.-]+",


def source(wildcards):
    return X.sources[wildcards.capture]


def capture_manifest(wildcards):
    return source(wildcards).manifest_path


def capture_reads(wildcards):
    return [READS.path(capture=wildcards.capture, domain=d) for d in source(wildcards).domains()]


def capture_skipped(wildcards):
    return [SKIPPED.path(capture=wildcards.capture, domain=d) for d in source(wildcards).domains()]


def mix_priority(wildcards):
    """A replay's priority: the mix's share of the largest mix's domains, so that the longest
    replay starts first; below 1, under stage 1 and 2 (priority 10), which come first."""
    n = len(X.mix_domains(wildcards.mix))
    return n / (1 + max(len(X.mix_domains(m)) for m in X.config["mixes"]))


def capture_lenient(wildcards):
    return source(wildcards).lenient


def capture_keep_every(wildcards):
    return source(wildcards).keep_every


def domain_files(wildcards):
    return source(wildcards).domain_files(wildcards.domain)


def disk_files(wildcards):
    return source(wildcards).disk_files(wildcards.disk)


def domain_disk_table(wildcards):
    disk = source(wildcards).domain_disk(wildcards.domain)
    return [] if disk is None else BLOCKS.path(capture=wildcards.capture, disk=disk)


def synthetic_spec(wildcards):
    return source(wildcards).spec


def mix_tables(table, **fields):
    """An input function: the mix's domains' files of ``table`` (``fields`` and the job's wildcards fill the rest)."""

    def files(wildcards):
        known = dict(wildcards.items()) | fields | {"capture": mix_capture(wildcards)}
        return [table.path(**known, domain=d) for d in X.mix_domains(wildcards.mix)]

    return files


def mix_capture(wildcards):
    return X.mix_source(wildcards.mix).name


def mix_synthetic(wildcards):
    return X.mix_synthetic(wildcards.mix)


def run_tables(table):
    """``table``'s file of every mix of the experiment."""
    return [table.path(experiment=X.name, mix=m) for m in X.config["mixes"]]


def per_page_files(table):
    return {c: [table.path(capture=c, domain=d) for d in X.sources[c].domains()] for c in X.captures}
