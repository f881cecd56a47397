"""Exporters: leaves that read the public analysis result or the observation stream and write one format.

Each module here writes one format and imports its library through :func:`zlperf.extras.require`, so
a missing optional package is one line, not a traceback. None reaches into a reader or the
aggregation's private state: they read :class:`~zlperf.analysis.result.AnalysisResult`, the report
document, :class:`~zlperf.analysis.stream.ObservationStream` and ``Analyzer.attributed``.
"""
