"""An experiment: one config file's captures, mixes and sweep, and the results
folder that is its own (``results/<experiment>/``).

A config file given with --configfile that names ``mixes`` replaces the
default mixes (``own_mixes``); its other keys override the defaults one by one.
The experiment is named after the config files given with ``--configfile``
(their stems, joined by '+': ``config/sweeps/area-sizes.yaml`` is
``area-sizes``), or ``default`` for the workflow's own ``config/config.yaml``;
``--config experiment=NAME`` names it explicitly. The capture stages
(normalised traces, pages, reads) are shared by every experiment of the
project; replays, the database, figures and tables are not, so one experiment
never overwrites or reruns another. A capture's name therefore means one
capture in the whole project: a name defined differently by two experiments is
refused, never mixed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from xpipe.configcheck import validate_config
from xpipe.errors import InputError
from xpipe.schemas import fill
from xpipe.sim.runs import RunSpec, expand_sweep, sweep_schema
from xpipe.sources import CaptureSource, capture_source

#: Every result of an experiment but its run tables (those are in xpipe.sim.tables).
RESULTS = {
    "database": "results/{experiment}/xpipe.duckdb",
    "figure": "results/{experiment}/figures/{figure}.png",
    "figure_svg": "results/{experiment}/figures/{figure}.svg",
    "summary_csv": "results/{experiment}/tables/summary.csv",
    "summary_md": "results/{experiment}/tables/summary.md",
    "log": "results/{experiment}/logs/{job}.log",
    "benchmark": "results/{experiment}/benchmarks/{job}.tsv",
}

#: Folders of results/ that hold the shared capture stages, not experiments.
SHARED_FOLDERS = frozenset({"normalised", "pages", "reads", "synthetic", "captures", "logs", "benchmarks", "bench",
                            "compiled"})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
#: The workflow's own config file (the Snakefile's `configfile:`), the experiment "default".
DEFAULT_CONFIG = "config/config.yaml"
DEFAULT_EXPERIMENT = "default"


def experiment_name(config: dict, configfiles: list[str]) -> str:
    """``configfiles``: those given with --configfile, in order."""
    own = Path(DEFAULT_CONFIG).resolve()
    stems = [Path(f).stem for f in configfiles if Path(f).resolve() != own]
    name = config.get("experiment") or "+".join(stems) or DEFAULT_EXPERIMENT
    if not _NAME.fullmatch(name) or name in SHARED_FOLDERS:
        raise InputError(", ".join(configfiles) or DEFAULT_CONFIG, "experiment",
                         "a name of letters, digits, '_', '.', '+', '-' starting with a letter or digit, other "
                         f"than {', '.join(sorted(SHARED_FOLDERS))}; got {name!r} (set one with --config "
                         "experiment=NAME)")
    return name


def own_mixes(config: dict, configfiles: list[str]) -> dict:
    """``config`` with only the mixes of the config files given with --configfile, when any
    of them names ``mixes``. Snakemake merges config files key by key, so without this an
    experiment on other data would also replay every mix of config/config.yaml; a file that
    names no mixes (a sweep of parameters) keeps the default ones."""
    own = Path(DEFAULT_CONFIG).resolve()
    mixes: dict | None = None
    for f in configfiles:
        if Path(f).resolve() == own:
            continue
        if not Path(f).is_file():
            raise InputError(f, None, "config file not found (from --configfile; relative to the working "
                                      "directory)")
        data = yaml.safe_load(Path(f).read_text())
        if isinstance(data, dict) and isinstance(data.get("mixes"), dict):
            mixes = {**(mixes or {}), **data["mixes"]}
    return config if mixes is None else {**config, "mixes": {m: config["mixes"][m] for m in mixes}}


def claim_capture(name: str, entry: dict, where: str) -> None:
    """Record what a capture name means in this project, or refuse a second meaning:
    its normalised traces, pages and reads are shared by every experiment."""
    record = Path("results/normalised") / name / "definition.yaml"
    text = yaml.safe_dump(entry, sort_keys=True)
    if record.exists():
        if record.read_text() != text:
            raise InputError(where, f"captures.{name}",
                             f"another definition of capture {name!r} made this project's results "
                             f"({record}); captures are shared by every experiment, so give this one another "
                             f"name, or delete results/normalised/{name}/ to redefine it")
        return
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(text)


def load_schema(path: str | Path) -> dict:
    """The config schema: the file's captures and mixes, and the sweep from the policy registry."""
    from xpipe.capture.spec import PRESETS

    schema = yaml.safe_load(Path(path).read_text())
    schema["properties"]["sweep"] = sweep_schema()
    schema["properties"]["captures"]["additionalProperties"]["properties"]["record"]["enum"] = list(PRESETS)
    return schema


@dataclass
class Experiment:
    name: str
    config: dict
    sources: dict[str, CaptureSource]
    runs: list[RunSpec]

    @classmethod
    def load(cls, config: dict, schema_path: str | Path, configfiles: list[str]) -> Experiment:
        """Check the whole config (unknown keys, types, ranges, names that refer to
        nothing) before anything runs; InputError names the file and the key."""
        configfiles = [str(f) for f in configfiles]
        where = ", ".join(dict.fromkeys([DEFAULT_CONFIG, *configfiles])) + " (or --config)"
        validate_config(config, load_schema(schema_path), where)
        config = own_mixes(config, configfiles)
        name = experiment_name(config, configfiles)
        try:
            runs = expand_sweep(config["sweep"])
        except ValueError as e:
            raise InputError(where, "sweep", str(e)) from None
        sources = {c: capture_source(c, entry) for c, entry in config["captures"].items()}
        for c in sorted({m["capture"] for m in config["mixes"].values()} & set(sources)):
            claim_capture(c, config["captures"][c], where)  # the mixes' captures: checked just below
        for mix, m in config["mixes"].items():
            if m["capture"] not in sources:
                raise InputError(where, f"mixes.{mix}.capture",
                                 f"a capture of captures ({', '.join(sources)}), not {m['capture']!r}")
            unknown = [d for d in m["domains"] if d not in sources[m["capture"]].domains()]
            if unknown:
                raise InputError(where, f"mixes.{mix}.domains",
                                 f"domains of capture {m['capture']!r}; {unknown} are not among "
                                 f"{sources[m['capture']].domains()}")
        return cls(name, config, sources, runs)

    def path(self, result: str, **values) -> str:
        """An entry of RESULTS for this experiment; fields not given stay {wildcards}."""
        return fill(RESULTS[result], experiment=self.name, **values)

    @property
    def captures(self) -> list[str]:
        """The captures the experiment's mixes use (its per-page views hold exactly these)."""
        return sorted({m["capture"] for m in self.config["mixes"].values()})

    def mix_source(self, mix: str) -> CaptureSource:
        return self.sources[self.config["mixes"][mix]["capture"]]

    def mix_domains(self, mix: str) -> list[str]:
        return list(self.config["mixes"][mix]["domains"])

    def mix_synthetic(self, mix: str) -> bool:
        return self.mix_source(mix).synthetic
