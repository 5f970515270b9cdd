"""Replaying one mix under many runs: the oracle first, then every other run."""

from __future__ import annotations

import logging
import time

import polars as pl

from xpipe.io import write_parquet
from xpipe.schemas import CAPACITY
from xpipe.sim.metrics import capacity, capacity_table, summarise
from xpipe.sim.replay import DomainTrace, RunSpec, replay

log = logging.getLogger(__name__)


def replay_sweep(domains: list[DomainTrace], mix: str, outputs: dict[str, dict[str, str]],
                 with_capacity: bool, host_mib: list[int], synthetic: bool) -> None:
    """Replay ``domains`` under every run in ``outputs`` (run id -> {timeline, types,
    capacity, summary} paths) and write each run's four tables."""
    runs = sorted(outputs, key=lambda r: r != "oracle")
    if runs[0] != "oracle":
        raise ValueError("a sweep needs the oracle run: every summary is measured against it")
    oracle_timeline = None
    for n, run in enumerate(runs, 1):
        started = time.perf_counter()
        spec = RunSpec.parse(run)
        result = replay(domains, spec, mix)
        if run == "oracle":
            oracle_timeline = result.timeline
        cap = (capacity_table(mix, run, capacity(domains, spec, mix, result.timeline), host_mib) if with_capacity
               else pl.DataFrame(schema=CAPACITY.schema))
        summary = summarise(result.timeline, oracle_timeline, cap if with_capacity else None,
                            spec, mix, synthetic, host_mib)
        out = outputs[run]
        write_parquet(result.timeline, out["timeline"])
        write_parquet(result.types, out["types"])
        write_parquet(cap, out["capacity"])
        write_parquet(summary, out["summary"])
        log.info("%s: run %d/%d %s replayed in %.1f s (savings %.1f%%)", mix, n, len(runs), run,
                 time.perf_counter() - started, 100 * summary["savings"][0])
