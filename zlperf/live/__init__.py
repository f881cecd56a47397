"""Live tracing without a trace file: ``zlperf top`` and ``zlperf exporter`` over a tracefs instance of their own.

``source`` reads per-CPU ring-buffer pages, ``session`` runs one tracing session, ``screen`` draws intervals,
``metrics`` and ``exporter`` turn them into Prometheus metrics; the analysis is :mod:`zlperf.analysis.live`.
"""

from __future__ import annotations

__all__ = ["LiveSession", "LiveSource", "Tick"]

from zlperf.live.session import LiveSession, Tick
from zlperf.live.source import LiveSource
