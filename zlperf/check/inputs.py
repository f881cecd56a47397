"""What ``zlperf check`` reads: a trace (trace.dat, perf.data), a report document (JSON), or a fleet folder.

Each becomes one ``zlperf.report/1`` document. A folder of Parquet tables (``zlperf export --parquet``) is
read by ``zlperf.fleet.fleet_document`` on the chosen engine, the document ``zlperf fleet --json`` prints.
"""

from __future__ import annotations

__all__ = ["document_of", "input_kind"]

import os
from pathlib import Path
from typing import Callable, Optional

from zlperf.errors import ZlperfError


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


def _fleet_document(path: str, engine: Optional[str], master: Optional[str]) -> dict:
    """The fleet report of a folder of Parquet tables (the engine's library is loaded only here)."""
    from zlperf.fleet import fleet_document

    return fleet_document([path], engine, master)


def document_of(path: str, analyze_trace: Callable[[str], dict], engine: Optional[str] = None,
                master: Optional[str] = None) -> dict:
    """The report document of ``path``: a JSON document read back (checked), a trace analysed with
    ``analyze_trace(path)``, or a fleet folder on ``engine`` (DuckDB by default; Spark at ``master``)."""
    kind = input_kind(path)
    if kind == "folder":
        return _fleet_document(path, engine, master)
    if kind == "json":
        from zlperf.report import build_document, load_result

        # Read back field by field (a document may come from anywhere), then written again by the one writer.
        return build_document(load_result(path))
    if not os.path.exists(path) and not os.path.islink(path):
        raise ZlperfError(f"{path}: no such file")
    return analyze_trace(path)
