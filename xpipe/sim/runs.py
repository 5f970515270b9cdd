"""Runs: a policy with one value for each of its parameters, named by a run id.

Everything here is derived from the policy registry (xpipe.sim.policies): the
run-id grammar, the sweep's expansion from the config, each run's label, its
place in tables and legends, and its parameter columns.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from xpipe.sim.policies import REGISTRY
from xpipe.sim.policy import Param, Policy, PolicyInfo, ReplayContext

_EVERY = re.compile(r"^(?P<base>.+?)(?:-e(?P<every>\d+))?$")


def all_params() -> list[Param]:
    """Every parameter of every policy, in registry order (each one a column of the run tables)."""
    return [p for info in REGISTRY.values() for p in info.params]


def policy_info(name: str) -> PolicyInfo:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"policy {name!r}: expected one of {', '.join(REGISTRY)}") from None


@dataclass(frozen=True)
class RunSpec:
    """One run: a policy, its parameter values (every one, in declaration order),
    and ``snapshot_every`` k (replay every k-th snapshot time only)."""

    policy: str
    values: tuple = ()
    snapshot_every: int = 1

    @classmethod
    def make(cls, policy: str, snapshot_every: int = 1, **params: Any) -> RunSpec:
        info = policy_info(policy)
        names = [p.name for p in info.params]
        unknown = sorted(set(params) - set(names))
        missing = [n for n in names if n not in params]
        if unknown or missing:
            raise ValueError(f"policy {policy}: parameters {names} expected"
                             + (f"; unknown {unknown}" if unknown else "") + (f"; missing {missing}" if missing else ""))
        if isinstance(snapshot_every, bool) or not isinstance(snapshot_every, int) or snapshot_every < 1:
            raise ValueError(f"snapshot_every must be a whole number >= 1, got {snapshot_every!r}")
        return cls(policy, tuple(p.validate(params[p.name]) for p in info.params), snapshot_every)

    @property
    def info(self) -> PolicyInfo:
        return policy_info(self.policy)

    @property
    def params(self) -> dict[str, Any]:
        return {p.name: v for p, v in zip(self.info.params, self.values)}

    @property
    def run_id(self) -> str:
        pieces = [self.policy] + [p.piece(v) for p, v in zip(self.info.params, self.values)]
        pieces += [f"e{self.snapshot_every}"] if self.snapshot_every > 1 else []
        return "-".join(x for x in pieces if x)

    @property
    def label(self) -> str:
        """The policy and its parameters as a person reads them, sizes in MiB; runs that
        differ only in snapshot_every share it (their tables say snapshot_every)."""
        return self.info.label(self.params)

    def sort_key(self) -> tuple:
        """Registry order, then parameters in declaration order: numbers as numbers,
        choices in their declared order."""
        key = []
        for p, v in zip(self.info.params, self.values):
            key.append(p.choices.index(v) if p.kind is str else v)
        return (self.info.order, self.policy, self.snapshot_every, tuple(key))

    def columns(self) -> dict[str, Any]:
        """Every registry parameter's column: this run's values, None for other policies'."""
        own = self.params
        return {p.name: own.get(p.name) for p in all_params()}

    def make_policy(self, ctx: ReplayContext) -> Policy:
        return self.info.factory(self.params, ctx)

    @classmethod
    def parse(cls, run_id: str) -> RunSpec:
        m = _EVERY.match(run_id)
        base, every = m["base"], int(m["every"]) if m["every"] else 1
        info = REGISTRY.get(base.split("-", 1)[0])
        hit = info.run_pattern.fullmatch(base) if info else None
        if hit is None:
            grammar = "; ".join(_grammar(i) for i in REGISTRY.values())
            raise ValueError(f"run id {run_id!r}: expected one of {grammar}, then -e<k> to replay every k-th snapshot")
        return cls.make(info.name, every, **{p.name: p.parse(hit[p.name]) for p in info.params})


def _grammar(info: PolicyInfo) -> str:
    pieces = []
    for p in info.params:
        if p.kind is bool:
            pieces.append(f"[-{p.token}]")
        else:
            what = f"({'|'.join(p.choices)})" if p.kind is str else f"<{p.name}>"
            pieces.append("-" + p.token.replace("{}", what))
    return info.name + "".join(pieces)


def expand_sweep(sweep: dict) -> list[RunSpec]:
    """Every run of a sweep config (the ``sweep:`` section, defaults filled in), in
    display order. Policies that are always run (the references) come in even when
    not named; the oracle at every snapshot is kept for the sparser runs to compare with."""
    names = [n for n, info in REGISTRY.items() if info.always or n in sweep["policies"]]
    unknown = [n for n in sweep["policies"] if n not in REGISTRY]
    if unknown:
        raise ValueError(f"sweep.policies: unknown {unknown}; expected some of {', '.join(REGISTRY)}")
    everies = sorted(set(sweep["snapshot_every"]) | {1})
    runs = []
    for k in everies:
        for name in names:
            params = REGISTRY[name].params
            for values in itertools.product(*(sweep[p.name] for p in params)):
                runs.append(RunSpec.make(name, k, **dict(zip((p.name for p in params), values))))
    runs = sorted(dict.fromkeys(runs), key=RunSpec.sort_key)
    for r in runs:  # names are how tables, paths and figures tell runs apart
        if RunSpec.parse(r.run_id) != r:
            raise ValueError(f"run {r.run_id!r} does not name its parameters exactly")
    seen: dict[tuple, RunSpec] = {}
    for r in runs:
        if (twin := seen.setdefault((r.label, r.snapshot_every), r)) is not r:
            raise ValueError(f"runs {twin.run_id} and {r.run_id} have the same label {r.label!r}")
    return runs


def sweep_schema() -> dict:
    """The JSON schema of the config's ``sweep:`` section, from the registry."""
    props = {
        "policies": {"type": "array", "items": {"enum": list(REGISTRY)}, "uniqueItems": True,
                     "default": list(REGISTRY),
                     "description": "policies to run; " + " and ".join(n for n, i in REGISTRY.items() if i.always)
                     + " always run (savings are measured against them)"},
        "snapshot_every": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1,
                           "uniqueItems": True,
                           "default": [1], "description": "replay every k-th snapshot time too (k = 1: all); "
                           "the first and last snapshot are always kept"},
        "host_mib": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1,
                     "uniqueItems": True,
                     "default": [1024], "description": "host memory sizes for domains-per-host, MiB"},
    }
    for p in all_params():
        props[p.name] = p.json_schema()
    return {"type": "object", "description": "the parameter matrix every mix is replayed under",
            "default": {}, "additionalProperties": False, "properties": props}


def describe_policies() -> str:
    """The registry as text: `xpipe policies`."""
    lines = []
    for info in REGISTRY.values():
        lines.append(f"{info.name}: {info.doc}" + ("  (always run)" if info.always else ""))
        for p in info.params:
            values = ", ".join(p.choices) if p.choices else p.kind.__name__
            unit = f" [{p.unit}]" if p.unit else ""
            lines.append(f"    {p.name:<18}{unit:<11} {values:<16} default {list(p.default)}  {p.doc}")
        lines.append(f"    run id: {_grammar(info)}[-e<k>]")
    return "\n".join(lines)
