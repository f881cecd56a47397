"""What ``zlperf check`` reads: a trace (trace.dat, perf.data), a report document (JSON), or a fleet folder.

Each becomes one ``zlperf.report/1`` document. Fleet Parquet folders are an extension point: a module
``zlperf.fleet`` providing ``fleet_document(paths, engine=None) -> dict`` (the document ``zlperf fleet --json``
prints) makes ``zlperf check FOLDER`` work; until it exists a folder is one error line saying so.
"""

from __future__ import annotations

__all__ = ["document_of", "input_kind", "FLEET_MODULE", "FLEET_FUNCTION"]

import importlib
import os
from pathlib import Path
from typing import Callable, Optional

from zlperf.errors import ZlperfError

#: The fleet engine's module and the function ``zlperf check`` calls on a folder (see the module docstring).
FLEET_MODULE = "zlperf.fleet"
FLEET_FUNCTION = "fleet_document"


def input_kind(path: str) -> str:
    """"folder", "json" (a report document) or "trace" (trace.dat / perf.data, or anything else to try)."""
    p = Path(path)
    if p.is_dir():
        return "folder"
    try:
        with open(p, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return "trace"  # the trace reader says what is wrong with it, in one line
    return "json" if head.lstrip()[:1] == b"{" else "trace"


def _fleet_document(path: str, engine: Optional[str]) -> dict:
    """EXTENSION POINT: the fleet report of a folder of Parquet tables, from ``zlperf.fleet``."""
    try:
        fleet = importlib.import_module(FLEET_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != FLEET_MODULE:
            raise ZlperfError(f"{path}: reading a fleet folder needs {exc.name} (zlperf fleet's engine): "
                              f"pip install 'zlperf[duckdb]'") from None
        fleet = None
    build: Optional[Callable[..., dict]] = getattr(fleet, FLEET_FUNCTION, None)
    if build is None:
        raise ZlperfError(f"{path}: is a folder; this zlperf has no fleet engine to read Parquet folders "
                          "(give a trace.dat, perf.data or a `zlperf report --json` document)")
    return build([path], engine=engine)


def document_of(path: str, analyze_trace: Callable[[str], dict], engine: Optional[str] = None) -> dict:
    """The report document of ``path``: a JSON document read back (checked), a trace analysed with
    ``analyze_trace(path)``, or a fleet folder through the extension point."""
    kind = input_kind(path)
    if kind == "folder":
        return _fleet_document(path, engine)
    if kind == "json":
        from zlperf.report import build_document, load_result

        # Read back field by field (a document may come from anywhere), then written again by the one writer.
        return build_document(load_result(path))
    if not os.path.exists(path) and not os.path.islink(path):
        raise ZlperfError(f"{path}: no such file")
    return analyze_trace(path)
