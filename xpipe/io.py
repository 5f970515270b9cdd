"""Writing results: atomically, so an interrupted or failed job never leaves half a file."""

from __future__ import annotations

import errno
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from xpipe.errors import InputError

if TYPE_CHECKING:  # xpipe hash writes through atomic_path and loads no polars
    import polars as pl


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to: renamed to ``path`` when the
    block ends, removed when it raises, so ``path`` is never half written."""
    path = Path(path)
    if path.is_dir():  # found now, not after the work, when the rename fails
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_parquet(df: pl.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.write_parquet(tmp, statistics=True)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def run_logged(log_path: str | Path | None, main: Callable[[], None]) -> None:
    """Run a workflow script's ``main`` with logging to its log file and stderr.

    Bad input ends the job with the one-line InputError message, not a traceback.
    SIGTERM (Snakemake stopping its jobs) unwinds like Ctrl-C, so no temporary
    file of atomic_path is left behind.
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
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
