"""What every benchmark records beside its figures: the machine, its load, and the JSON file."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path


def load_now() -> float:
    """The 1-minute load average: other work on the machine slows the runs."""
    return round(os.getloadavg()[0], 2)


def machine(load_start: float) -> dict:
    """CPUs, Python, and the load before (``load_start``) and after the runs."""
    return {"cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "loadavg_start": load_start, "loadavg_end": load_now()}


def write_result(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
