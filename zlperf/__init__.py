"""zlperf: record and analyse page-allocator zone->lock contention.

Readers turn trace.dat / perf.data into columnar event batches (:mod:`zlperf.events`); one analysis
core (:mod:`zlperf.analysis`) turns them into an :class:`AnalysisResult`; :func:`build_document`
writes the ``zlperf.report/1`` document that every renderer and exporter reads::

    import zlperf
    with zlperf.open_trace("trace.dat") as trace:
        result = zlperf.analyze(trace, zlperf.AnalysisOptions(top=5))
    print(zlperf.render_text(zlperf.build_document(result)))

The names below are the public API. They are imported on first use, so ``import zlperf`` stays
cheap for the command line and for perf's embedded Python.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    # reading
    "open_trace", "TraceInfo", "TraceReader", "Chunk", "EventBatch", "MISSED_EVENTS",
    # analysing
    "analyze", "Analyzer", "AnalysisOptions", "AnalysisResult",
    # live: a tracefs instance read as it records, one result per interval (zlperf top, zlperf exporter)
    "LiveSession", "IntervalAnalyzer",
    # the report document
    "SCHEMA", "build_document", "load_result", "merge_results", "diff_documents",
    # recipes and budgets
    "load_recipe", "check_document",
    # exports and fleets (optional extras: parquet, duckdb, spark)
    "export_recording", "fleet_report",
    # rendering
    "render_text", "render_csv", "render_diff", "render_folded",
    # errors
    "ZlperfError", "TraceFormatError", "RecipeError", "RecordError",
]

#: public name -> the module that defines it
_HOME = {
    "open_trace": "zlperf.readers",
    "TraceInfo": "zlperf.events", "TraceReader": "zlperf.events", "Chunk": "zlperf.events",
    "EventBatch": "zlperf.events", "MISSED_EVENTS": "zlperf.events",
    "analyze": "zlperf.analysis", "Analyzer": "zlperf.analysis", "AnalysisOptions": "zlperf.analysis",
    "AnalysisResult": "zlperf.analysis",
    "LiveSession": "zlperf.live", "IntervalAnalyzer": "zlperf.analysis.live",
    "SCHEMA": "zlperf.report", "build_document": "zlperf.report", "load_result": "zlperf.report",
    "merge_results": "zlperf.report", "diff_documents": "zlperf.report",
    "load_recipe": "zlperf.recipes", "check_document": "zlperf.check",
    "export_recording": "zlperf.export.parquet", "fleet_report": "zlperf.fleet",
    "render_text": "zlperf.render.text", "render_diff": "zlperf.render.text", "render_folded": "zlperf.render.text",
    "render_csv": "zlperf.render.csv",
    "ZlperfError": "zlperf.errors", "TraceFormatError": "zlperf.errors", "RecipeError": "zlperf.errors",
    "RecordError": "zlperf.errors",
}


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'zlperf' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
