"""JSON text of a report document: indented where a reader looks for keys, rows of numbers on one line.

``json.dump(doc, indent=1)`` runs the pure-Python encoder over every number of the document (the timeline,
histograms, slices: tens of thousands of values, ~0.05 s); here the containers are indented in Python and
each list of numbers (or of short lists of numbers) is written by the C encoder in one call. The text is
the same JSON value, only laid out differently.
"""

from __future__ import annotations

__all__ = ["json_text"]

import json
from typing import Any

_ROW = json.JSONEncoder(separators=(", ", ": "))  # the C encoder: no indent


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _flat(value: list) -> bool:
    """A list of scalars, or of lists of scalars (a histogram's [bound, count] pairs): one line."""
    return all(_scalar(v) or (isinstance(v, list) and all(_scalar(x) for x in v)) for v in value)


def _write(value: Any, depth: int, out: list[str]) -> None:
    pad = "\n" + " " * (depth + 1)
    if isinstance(value, dict) and value:
        out.append("{")
        for i, (key, item) in enumerate(value.items()):
            out.append(("," if i else "") + pad + _ROW.encode(str(key)) + ": ")
            _write(item, depth + 1, out)
        out.append("\n" + " " * depth + "}")
    elif isinstance(value, (list, tuple)) and value and not _flat(list(value)):
        out.append("[")
        for i, item in enumerate(value):
            out.append(("," if i else "") + pad)
            _write(item, depth + 1, out)
        out.append("\n" + " " * depth + "]")
    else:
        out.append(_ROW.encode(value))


def json_text(doc: Any) -> str:
    """``doc`` as JSON text (no trailing newline)."""
    out: list[str] = []
    _write(doc, 0, out)
    return "".join(out)
