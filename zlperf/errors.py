"""Errors zlperf shows to users: one line that names the file, the place and what to do.

The CLI catches :class:`ZlperfError` and prints ``zlperf: <message>`` with no traceback;
anything else escaping is a bug.
"""

from __future__ import annotations

__all__ = ["ZlperfError", "TraceFormatError", "RecipeError", "RecordError", "warn"]

import sys


class ZlperfError(Exception):
    """A problem the user can act on; ``str()`` is the whole one-line message."""


class TraceFormatError(ZlperfError):
    """A trace file that cannot be read (at all, or past some offset).

    ``path`` and ``offset`` say where; the message says what to do.
    """

    def __init__(self, path: str, offset: int | None, problem: str, hint: str = ""):
        self.path = str(path)
        self.offset = offset
        self.problem = problem
        self.hint = hint
        where = self.path if offset is None else f"{self.path}: offset {offset:#x}"
        msg = f"{where}: {problem}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)

    def __reduce__(self):
        # Rebuilt from its parts: a decoding worker process hands it to the reader pickled.
        return (type(self), (self.path, self.offset, self.problem, self.hint))


class RecipeError(ZlperfError):
    """A recipe that does not load or validate; the message starts with file:line:column."""


class RecordError(ZlperfError):
    """Recording cannot start or failed; the message explains what is missing."""


def warn(message: str) -> None:
    """Print a one-line warning to stderr (what was lost or assumed, never silently)."""
    print(f"zlperf: warning: {message}", file=sys.stderr)
