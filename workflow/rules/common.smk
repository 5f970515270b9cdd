# Helpers and input functions shared by the rules: the experiment as the
# config describes it (captures, their domains, mixes, runs).
from pathlib import Path

from snakemake.utils import validate

from xpipe.capture.images import DISK_NAMES
from xpipe.capture.spec import PRESETS, preset
from xpipe.hashing import PAGES_PER_MIB
from xpipe.readers.manifest import load_manifest
from xpipe.report import FIGURE_NAMES
from xpipe.schemas import BLOCKS, CAPACITY, DOMAINS, PAGES, READS, SUMMARY, TIMELINE, TYPES
from xpipe.sim.replay import RunSpec
from xpipe.synthetic import SyntheticSpec, domain_ids

validate(config, "../schemas/config.schema.yaml")

# The project's own folder (where the Snakefile is), so the workflow also runs
# with another working directory (snakemake -d DIR).
SRC = Path(workflow.basedir)


def src(*paths):
    return [str(SRC / p) for p in paths]


# The package modules each stage runs, as inputs: editing a module reruns
# exactly the jobs of its stage and those downstream, nothing else.
CODE = {
    "synthetic": src("xpipe/synthetic.py"),
    "normalise": src("xpipe/normalise.py", "xpipe/hashing.py", "xpipe/_pagehash.c")
    + src(*(f"xpipe/readers/{m}.py" for m in ("__init__", "manifest", "compact", "memdump", "blktrace"))),
    "extract": src("xpipe/extract.py", "xpipe/pagetypes.py"),
    "replay": src("xpipe/sim/area.py", "xpipe/sim/policies.py", "xpipe/sim/replay.py", "xpipe/sim/load.py",
                  "xpipe/sim/sweep.py"),
    "summarise": src("xpipe/sim/metrics.py"),
    "database": src("xpipe/report/db.py"),
    "figures": src("xpipe/report/figures.py"),
    "tables": src("xpipe/report/tables.py"),
}
FIGURES = FIGURE_NAMES


wildcard_constraints:
    capture=r"[A-Za-z0-9_.-]+",
    domain=r"[A-Za-z0-9_.-]+",
    disk=r"[A-Za-z0-9_.-]+",
    mix=r"[A-Za-z0-9_.-]+",
    preset="|".join(PRESETS),
    run=r"[A-Za-z0-9_.-]+",


def synthetic_spec(capture):
    s = dict(config["captures"][capture]["synthetic"])
    for key in ("workloads", "domains_per_workload", "snapshot_times_s"):
        if key in s:
            s[key] = tuple(s[key])
    return SyntheticSpec(**s)


def is_synthetic(capture):
    return "synthetic" in config["captures"][capture]


def recorded_preset(capture):
    """The `xpipe capture` preset a capture is recorded from (rule capture), or None."""
    return config["captures"][capture].get("record")


def manifest_path(capture):
    if is_synthetic(capture):
        return f"results/synthetic/{capture}/manifest.yaml"
    if recorded_preset(capture):
        return f"results/captures/{recorded_preset(capture)}/manifest.yaml"
    return config["captures"][capture]["manifest"]


def on_disk(capture):
    """Whether the capture's bundle exists before the run (else a rule makes it)."""
    return not is_synthetic(capture) and not recorded_preset(capture)


# Bundles on disk are read once, when the workflow loads: a bad manifest stops
# the run before any job starts, so no existing result is touched. The domains
# and disks of the others are known from their generator or capture preset.
MANIFESTS = {c: load_manifest(manifest_path(c)) for c in config["captures"] if on_disk(c)}


def capture_domains(capture):
    if is_synthetic(capture):
        return domain_ids(synthetic_spec(capture))
    if recorded_preset(capture):
        return [d.id for d in preset(recorded_preset(capture)).domains]
    return [d.id for d in MANIFESTS[capture].domains]


def capture_disks(capture):
    if is_synthetic(capture):
        return ["image"]
    if recorded_preset(capture):
        return [DISK_NAMES[preset(recorded_preset(capture)).guest]]
    return sorted(MANIFESTS[capture].disks)


def domain_disk(capture, domain):
    """The disk name a domain reads from, or None."""
    if not on_disk(capture):
        return capture_disks(capture)[0]  # every generated or recorded domain reads the one disk
    d = MANIFESTS[capture].domain(domain).disk
    return d.name if d else None


def synthetic_params(wildcards):
    return synthetic_spec(wildcards.capture)


def capture_manifest(wildcards):
    return manifest_path(wildcards.capture)


def capture_reads(wildcards):
    return [READS.where.format(capture=wildcards.capture, domain=d) for d in capture_domains(wildcards.capture)]


def domain_files(wildcards):
    """Every file stage 1 reads for a domain, so a changed file reruns it."""
    files = [manifest_path(wildcards.capture)]
    if on_disk(wildcards.capture):
        d = MANIFESTS[wildcards.capture].domain(wildcards.domain)
        files += [str(s.path) for s in d.snapshots]
        files += [str(s.kpageflags) for s in d.snapshots if s.kpageflags]
        files += [str(d.reads)] if d.reads else []
    return files


def disk_files(wildcards):
    files = [manifest_path(wildcards.capture)]
    if on_disk(wildcards.capture):
        d = MANIFESTS[wildcards.capture].disks[wildcards.disk]
        files.append(str(d.block_hashes or d.image))
    return files


def domain_disk_table(wildcards):
    disk = domain_disk(wildcards.capture, wildcards.domain)
    if disk is None:
        return []
    return BLOCKS.where.format(capture=wildcards.capture, disk=disk)


for _mix, _m in config["mixes"].items():
    if _m["capture"] not in config["captures"]:
        raise ValueError(f"config: mix {_mix!r} names capture {_m['capture']!r}, not in captures")
    _unknown = set(_m["domains"]) - set(capture_domains(_m["capture"]))
    if _unknown:
        raise ValueError(f"config: mix {_mix!r} names domains {sorted(_unknown)} not in capture {_m['capture']!r}")


def run_ids():
    """Every run of the sweep; none and oracle always (savings are relative to them)."""
    sw = config["sweep"]  # every key has its default: validate fills them in from the schema
    policies = sw["policies"]
    runs = [dict(policy="none"), dict(policy="oracle")]
    if "zero" in policies:
        runs.append(dict(policy="zero"))
    if "scan" in policies:
        runs += [dict(policy="scan", scan_pages_per_s=r) for r in sw["scan_pages_per_s"]]
    if "dsa" in policies:
        runs += [
            dict(policy="dsa", eviction=ev, area_pages=int(round(a * PAGES_PER_MIB)), admit_zero=z)
            for a in sw["area_mib"]
            for ev in sw["eviction"]
            for z in sw["admit_zero"]
        ]
    everies = sorted(set(sw["snapshot_every"]) | {1})  # the oracle at every snapshot is the reference
    ids = [RunSpec(**r, snapshot_every=k).run_id for k in everies for r in runs]
    return list(dict.fromkeys(ids))


def host_mib():
    return config["sweep"]["host_mib"]


def mix_capture(wildcards):
    return config["mixes"][wildcards.mix]["capture"]


def mix_pages(wildcards):
    c = mix_capture(wildcards)
    return [PAGES.where.format(capture=c, domain=d) for d in config["mixes"][wildcards.mix]["domains"]]


def mix_reads(wildcards):
    c = mix_capture(wildcards)
    return [READS.where.format(capture=c, domain=d) for d in config["mixes"][wildcards.mix]["domains"]]


def mix_synthetic(wildcards):
    c = mix_capture(wildcards)
    return is_synthetic(c) or (on_disk(c) and MANIFESTS[c].synthetic)  # a recorded capture is real


RUN_TABLES = {"timeline": TIMELINE, "types": TYPES, "capacity": CAPACITY, "summary": SUMMARY}


def all_outputs(kind):
    """A results file of every run of every mix (kind: timeline, types, capacity, summary)."""
    return [RUN_TABLES[kind].where.format(mix=m, run=r) for m in config["mixes"] for r in run_ids()]


def all_domain_tables():
    return [DOMAINS.where.format(capture=c) for c in config["captures"]]
