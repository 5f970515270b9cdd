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


def _pid_running(pid: int) -> bool:
    if pid <= 0:  # kill(0, ...) would ask about our own process group
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OverflowError, ValueError):  # no such pid can exist
        return False
    return True


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files of ``path`` (``.NAME.tmpPID``, and ``.NAME.tmpPID.EXT``
    such as DuckDB's write-ahead log) whose process is gone:
    a job killed with SIGKILL (or the machine going down) cannot remove its own.

    A temporary file of a process that still runs is kept (it may be writing); so
    is one whose PID was reused by another process since, until that process ends.
    The PID is this machine's: on a file system shared by several machines, a
    job on another machine writing the same result at the same time would lose
    its temporary file, but two jobs writing one result is wrong already.
    Returns the files removed.
    """
    removed = []
    prefix = f".{path.name}.tmp"
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return removed
    for p in siblings:
        if not p.name.startswith(prefix):
            continue
        pid = p.name[len(prefix):].partition(".")[0]  # .NAME.tmpPID, or its .NAME.tmpPID.wal
        if not (pid.isascii() and pid.isdigit()) or int(pid) == os.getpid() or _pid_running(int(pid)):
            continue
        try:
            p.unlink()
        except OSError:  # removed by another process first, a directory, or not ours to remove
            continue
        removed.append(p)
    return removed


def _naming(e: OSError, tmp: Path, path: Path) -> OSError:
    """``e``, or when it names the temporary file, the same error naming ``path``: the user
    never gave the temporary name (a failed rename tmp -> path names ``path`` once)."""
    if e.filename is None or str(e.filename) != str(tmp):
        return e
    return OSError(e.errno, e.strerror, str(path))  # OSError(errno, ...) is the subclass for errno


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to: renamed to ``path`` when the
    block ends, removed when it raises, so ``path`` is never half written.

    Before the block runs, stale temporary files of ``path`` left by killed
    processes are removed, and the temporary file is created once and removed
    again, so an output that cannot be written fails now, not after the work,
    and an OSError about the temporary file names ``path`` instead.
    """
    path = Path(path)
    if path.is_dir():  # found now, not after the work, when the rename fails
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file where a folder of the path should be
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path)) from None
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    remove_stale_temporaries(path)
    try:
        tmp.unlink(missing_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))  # can we write here?
        tmp.unlink()
    except OSError as e:
        raise _naming(e, tmp, path) from None
    try:
        yield tmp
        tmp.replace(path)
    except OSError as e:
        renamed = _naming(e, tmp, path)
        if renamed is e:
            raise
        raise renamed from None
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
