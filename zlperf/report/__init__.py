"""The report document (``zlperf.report/1``): its one writer, its reader, merging and diffing.

:func:`build_document` writes the document of an :class:`~zlperf.analysis.result.AnalysisResult`;
:func:`load_result` reads a document file back into one (checked field by field);
:func:`merge_results` joins many; :func:`diff_documents` compares two.

Each is imported from its module on first use: ``zlperf report`` needs the writer only, and the reader,
merging and diffing would add ~13 ms to the start of every report.
"""

from __future__ import annotations

__all__ = ["SCHEMA", "build_document", "load_document", "result_from_document", "load_result", "merge_results",
           "merge_stats", "diff_documents", "HistogramStats"]

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zlperf.analysis.result import AnalysisResult
    from zlperf.report.diff import diff_documents
    from zlperf.report.document import SCHEMA, build_document
    from zlperf.report.merge import merge_results, merge_stats
    from zlperf.report.read import HistogramStats, load_document, result_from_document

_HOME = {"SCHEMA": "document", "build_document": "document", "diff_documents": "diff", "merge_results": "merge",
         "merge_stats": "merge", "HistogramStats": "read", "load_document": "read", "result_from_document": "read"}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # found directly from now on
    return value


def load_result(path: str, host: str | None = None) -> "AnalysisResult":
    """The result written in the document file ``path`` (bounded read, every field checked)."""
    from zlperf.report.read import load_document, result_from_document

    return result_from_document(load_document(path), path, host)
