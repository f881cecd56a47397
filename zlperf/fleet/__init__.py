"""Fleet reports: many hosts' Parquet tables (``zlperf export --parquet``) as one exact report.

:func:`fleet_report` finds and checks the hosts' folders (:mod:`.tables`), runs the SQL of :mod:`.sql` on
an engine (:mod:`.engines`: DuckDB embedded, or Spark) and builds the :class:`AnalysisResult` (:mod:`.report`).
"""

from __future__ import annotations

__all__ = ["fleet_report"]

from typing import Optional

from zlperf.analysis.result import AnalysisResult


def fleet_report(paths: list[str], engine: str = "duckdb", master: Optional[str] = None, top: int = 10,
                 conf: Optional[dict[str, str]] = None) -> AnalysisResult:
    """The report of every host under ``paths``, computed by ``engine`` ("duckdb" or "spark"; ``master``
    and ``conf``: the Spark cluster and its settings)."""
    from zlperf.fleet.engines import open_engine
    from zlperf.fleet.report import fleet_result
    from zlperf.fleet.tables import find_hosts

    hosts = find_hosts(paths)
    runner = open_engine(engine, master, conf)
    try:
        return fleet_result(hosts, runner, top)
    finally:
        runner.close()
