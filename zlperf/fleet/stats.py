"""Distributions an engine computed over pooled values: the report's :class:`Stats`, exact, from SQL rows.

Each group's count, exact sum, minimum, maximum and nearest-rank percentiles come from the stats query;
its log2 and log-linear histograms from the histogram query (as "bucket:count,..." texts).
"""

from __future__ import annotations

__all__ = ["EngineStats", "StatsKey", "group_key", "read_stats"]

from typing import Optional

from zlperf.fleet.sql import KEY_COLUMNS, KEYS, PERCENT

#: (dimension, key tuple, "wait" | "hold")
StatsKey = tuple[str, tuple, str]
_NKEYS = len(KEY_COLUMNS)
_INDEX = {name: i for i, (name, _) in enumerate(KEY_COLUMNS)}


class EngineStats:
    """A distribution known by the engine's exact answers (implements :class:`~zlperf.analysis.result.Stats`)."""

    __slots__ = ("_summary",)

    def __init__(self, summary: dict):
        self._summary = summary

    @property
    def count(self) -> int:
        return int(self._summary["count"])

    @property
    def total(self) -> int:
        return int(self._summary["sum"])

    def summary(self) -> Optional[dict]:
        return dict(self._summary) if self.count else None


def group_key(row: tuple) -> StatsKey:
    """(dimension, its key values, which) of a row that starts with dim, the key columns and which."""
    dim = row[0]
    keys = tuple(row[1 + _INDEX[name]] for name in KEYS[dim])
    return dim, keys, row[1 + _NKEYS]


def _pairs(text: Optional[str]) -> list[tuple[int, int]]:
    if not text:
        return []
    out = []
    for item in text.split(","):
        bucket, count = item.split(":")
        out.append((int(bucket), int(count)))
    return sorted(out)


def read_stats(stats_rows: list[tuple], hist_rows: list[tuple]) -> dict[StatsKey, EngineStats]:
    """The distributions of every group from the stats and histogram queries' rows."""
    log2 = {group_key(r): _pairs(r[-1]) for r in hist_rows if r[-2] == "log2"}
    loglinear = {group_key(r): _pairs(r[-1]) for r in hist_rows if r[-2] == "loglinear"}
    out: dict[StatsKey, EngineStats] = {}
    for r in stats_rows:
        key = group_key(r)
        n, total, vmin, vmax, *pcts = r[2 + _NKEYS:]
        n, total = int(n), int(total)
        hist = [0] * (max((b for b, _ in log2.get(key, [])), default=-1) + 1)
        for b, c in log2.get(key, []):
            hist[b] = c
        s: dict = {"count": n, "sum": total, "min": int(vmin), "max": int(vmax), "mean": total / n}
        s.update({label: int(v) for (label, _, _), v in zip(PERCENT, pcts)})
        s["hist_log2"] = hist
        if key in loglinear:
            s["hist_loglinear"] = [[b, c] for b, c in loglinear[key]]
        s["percentiles_from"] = "exact"
        out[key] = EngineStats(s)
    return out
