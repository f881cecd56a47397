"""The report document (``zlperf.report/1``): its one writer, its reader, merging and diffing.

:func:`build_document` writes the document of an :class:`~zlperf.analysis.result.AnalysisResult`;
:func:`load_result` reads a document file back into one (checked field by field);
:func:`merge_results` joins many; :func:`diff_documents` compares two.
"""

from __future__ import annotations

__all__ = ["SCHEMA", "build_document", "load_document", "result_from_document", "load_result", "merge_results",
           "merge_stats", "diff_documents", "HistogramStats"]

from zlperf.analysis.result import AnalysisResult
from zlperf.report.diff import diff_documents
from zlperf.report.document import SCHEMA, build_document
from zlperf.report.merge import merge_results, merge_stats
from zlperf.report.read import HistogramStats, load_document, result_from_document


def load_result(path: str, host: str | None = None) -> AnalysisResult:
    """The result written in the document file ``path`` (bounded read, every field checked)."""
    return result_from_document(load_document(path), path, host)
