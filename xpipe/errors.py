"""The one error type for bad input: it names the file, the place and what was expected."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """A input file does not hold what xpipe expects.

    ``where`` is a line ("line 12"), a byte offset ("offset 8192") or a key
    path ("domains[2].snapshots"); the message says what was expected there.
    """

    def __init__(self, path: str | Path, where: str | None, expected: str):
        self.path = str(path)
        self.where = where
        self.expected = expected
        at = f"{self.path}, {where}" if where else self.path
        super().__init__(f"{at}: {expected}")


def bad_record(skipped: dict[str, int] | None, kind: str, path: str | Path, where: str, expected: str) -> None:
    """One bad record of a trace: an InputError, or, when reading leniently (``skipped``
    given), counted under ``kind`` so the caller skips it and reports the count."""
    if skipped is None:
        raise InputError(path, where, expected)
    skipped[kind] = skipped.get(kind, 0) + 1
