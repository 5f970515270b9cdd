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
