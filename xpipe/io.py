"""Writing results: atomically, so an interrupted or failed job never leaves half a file."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

import polars as pl

from xpipe.errors import InputError


def write_parquet(df: pl.DataFrame, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    df.write_parquet(tmp, statistics=True)
    tmp.replace(path)


def run_logged(log_path: str | Path | None, main: Callable[[], None]) -> None:
    """Run a workflow script's ``main`` with logging to its log file and stderr.

    Bad input ends the job with the one-line InputError message, not a traceback.
    """
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True,
                        format="%(asctime)s %(name)s: %(message)s")
    try:
        main()
    except InputError as e:
        logging.getLogger("xpipe").error("bad input: %s", e)
        sys.exit(1)
    except Exception:
        # anything else is a bug: keep its traceback in the job's log too
        logging.getLogger("xpipe").exception("failed")
        raise
