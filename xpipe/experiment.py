"""An experiment: one config file's captures, mixes and sweep, and the results
folder that is its own (``results/<experiment>/``).

The experiment is named after the config file given with ``--configfile`` (its
stem: ``config/sweeps/area-sizes.yaml`` is ``area-sizes``), or ``default`` for
``config/config.yaml``; ``--config experiment=NAME`` names it explicitly. The
capture stages (normalised traces, pages, reads) are shared by every
experiment of the project; replays, the database, figures and tables are not,
so one experiment never overwrites or reruns another.
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
SHARED_FOLDERS = frozenset({"normalised", "pages", "reads", "synthetic", "captures", "logs", "benchmarks", "bench"})
_NAME = re.compile(r"[A-Za-z0-9_.-]+")


def experiment_name(config: dict, configfiles: list[str]) -> str:
    name = config.get("experiment") or (Path(configfiles[-1]).stem if configfiles else "default")
    if not _NAME.fullmatch(name) or name in SHARED_FOLDERS:
        raise InputError(configfiles[-1] if configfiles else "config", "experiment",
                         f"a name of letters, digits, '_', '.', '-' other than {', '.join(sorted(SHARED_FOLDERS))}; "
                         f"got {name!r} (set one with --config experiment=NAME)")
    return name


def load_schema(path: str | Path) -> dict:
    """The config schema: the file's captures and mixes, and the sweep from the policy registry."""
    schema = yaml.safe_load(Path(path).read_text())
    schema["properties"]["sweep"] = sweep_schema()
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
        where = ", ".join(configfiles) if configfiles else "config/config.yaml"
        validate_config(config, load_schema(schema_path), where)
        name = experiment_name(config, configfiles)
        try:
            runs = expand_sweep(config["sweep"])
        except ValueError as e:
            raise InputError(where, "sweep", str(e)) from None
        sources = {c: capture_source(c, entry) for c, entry in config["captures"].items()}
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

    def mix_source(self, mix: str) -> CaptureSource:
        return self.sources[self.config["mixes"][mix]["capture"]]

    def mix_domains(self, mix: str) -> list[str]:
        return list(self.config["mixes"][mix]["domains"])

    def mix_synthetic(self, mix: str) -> bool:
        return self.mix_source(mix).synthetic
