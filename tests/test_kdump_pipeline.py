"""A real kdump-compressed capture through the whole workflow.

Two busybox guests (tests/test_kdump.py's) of 96 MiB, each snapshotted twice a few seconds
apart; at each snapshot the paused guest is dumped twice, as QEMU's kdump-zlib dump and as a
pmemsave of its RAM. The dumps make two capture bundles alike in all but the snapshot format
(memory only: no disk, no reads), each replayed as its own experiment in one copy of the
project. QEMU's kdump dump of a PC guest also holds the 64 frames of the BIOS ROM just below
4 GiB, which normalise leaves out; everything after must then be the same as from pmemsave.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import polars as pl
import pytest
import yaml
from guests import require_qemu
from test_kdump import BOOTED_MIB, busybox_guest
from test_pipeline import copy_project, snakemake

from xpipe.report.db import connect

DOMAINS = ("dup-1", "dup-2")
SNAPSHOTS = 2
APART_S = 3.0
SWEEP = {"policies": ["none", "zero", "oracle"], "snapshot_every": [1]}


def snapshot(guest, kd: Path, pm: Path) -> float:
    """A kdump-zlib dump and a pmemsave of the guest, paused for both; when it was paused (s since start)."""
    guest.pause()
    taken = guest.elapsed_s()
    try:
        guest.pmemsave(pm, pause=False)
        guest.qmp.command("dump-guest-memory", paging=False, protocol=f"file:{kd}", format="kdump-zlib")
    finally:
        guest.qmp.command("cont")
    return taken


def manifest(folder: Path, kind: str, snaps: dict[str, list[dict]]) -> Path:
    domains = [{"id": d, "workload": "dup", "memory_mib": BOOTED_MIB, "snapshots": [
        {"time_s": s["time_s"], kind: s[kind], "taken_at_s": s["taken_at_s"]} for s in snaps[d]]}
        for d in DOMAINS]
    path = folder / "manifest.yaml"
    path.write_text(yaml.safe_dump({
        "format": "xpipe-capture/1", "synthetic": False,
        "description": f"2 busybox guests under QEMU/TCG, {BOOTED_MIB} MiB, as {kind} snapshots",
        "domains": domains}, sort_keys=False))
    return path


def experiment(capture: str, bundle: Path) -> dict:
    return {"captures": {capture: {"manifest": str(bundle)}},
            "mixes": {"pair": {"capture": capture, "domains": list(DOMAINS)}},
            "sweep": SWEEP, "domains_per_host": False}


@pytest.mark.slow
def test_kdump_capture_replays_exactly_as_its_pmemsave(tmp_path: Path) -> None:
    require_qemu()
    bundles = {"kdump": tmp_path / "kd", "pmemsave": tmp_path / "pm"}
    for folder in bundles.values():
        for d in DOMAINS:
            (folder / d).mkdir(parents=True)
    snaps: dict[str, list[dict]] = {d: [] for d in DOMAINS}
    with ExitStack() as stack:
        guests = [stack.enter_context(busybox_guest(tmp_path / "work" / d, d, "dup", wait=False))
                  for d in DOMAINS]
        for g in guests:  # booting side by side
            g.wait_ready(90)
        formats = guests[0].qmp.command("query-dump-guest-memory-capability")["formats"]
        if "kdump-zlib" not in formats:
            pytest.skip(f"this QEMU writes no kdump-zlib dump (it offers {formats})")
        for k in range(SNAPSHOTS):
            if k:
                time.sleep(APART_S)
            time_s = float(round(guests[0].elapsed_s()))  # the scheduled time, the same for every domain
            for g in guests:
                kd, pm = f"{g.name}/s{k}.kdump", f"{g.name}/s{k}.raw"
                taken = snapshot(g, bundles["kdump"] / kd, bundles["pmemsave"] / pm)
                snaps[g.name].append({"time_s": time_s, "kdump": kd, "pmemsave": pm,
                                      "taken_at_s": round(taken, 3)})

    configs = {"kd": experiment("kd", manifest(bundles["kdump"], "kdump", snaps)),
               "pm": experiment("pm", manifest(bundles["pmemsave"], "pmemsave", snaps))}
    root = copy_project(tmp_path / "project")
    # The project's own config would bring the default capture's mixes into both experiments.
    (root / "config/config.yaml").write_text(yaml.safe_dump(configs["kd"]))
    for name, cfg in configs.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        snakemake(root, "--cores", "2", "--configfile", str(tmp_path / f"{name}.yaml"))

    log = (root / "results/logs/normalise_domain/kd/dup-1.log").read_text()
    assert log.count("left out the 64 frames of the PC firmware ROM") == SNAPSHOTS

    summaries = {name: pl.read_parquet(root / f"results/{name}/replay/pair/summary.parquet")
                 .select("run", "savings").sort("run") for name in configs}
    assert summaries["kd"].height == len(SWEEP["policies"])
    assert summaries["kd"].equals(summaries["pm"]), (summaries["kd"], summaries["pm"])
    savings = dict(summaries["kd"].iter_rows())
    assert savings["none"] == 0.0 and savings["oracle"] >= savings["zero"] > 0.0

    frames = {}
    for name in configs:
        con = connect(root / f"results/{name}/xpipe.duckdb")
        frames[name] = con.sql("SELECT capture, count(*) FROM pages GROUP BY ALL").fetchall()
        con.close()
    per_capture = len(DOMAINS) * SNAPSHOTS * BOOTED_MIB * 256
    assert frames == {"kd": [("kd", per_capture)], "pm": [("pm", per_capture)]}
