"""The analysis core: a reader's chunks in, one :class:`~zlperf.analysis.result.AnalysisResult` out.

Every front end (``zlperf report``, the perf script, the trace-cmd plugins) calls :func:`analyze`
or feeds an :class:`Analyzer` itself; none computes anything on its own. Layout, in data order:
``abi/`` (one adapter per event ABI -> observations), ``pairing`` (per-CPU open/close pairing),
``stacks`` (kernel stacks and callers), ``aggregate`` (per-group counters, distributions, worst
cases, timeline), ``stats`` (exact percentiles, log2 histograms), ``timeline``, ``result`` (the
public result types), ``core`` (the Analyzer that ties them together) and ``live`` (one result per
interval of a stream without an end, for ``zlperf top`` and the exporter).
"""

from __future__ import annotations

__all__ = ["AnalysisOptions", "AnalysisResult", "Analyzer", "analyze", "ABIS", "DIMENSIONS"]

from zlperf.analysis.core import Analyzer, analyze
from zlperf.analysis.options import ABIS, DIMENSIONS, AnalysisOptions
from zlperf.analysis.result import AnalysisResult
