"""Budgets: a recipe's upper limits on the report (overall, per zone, per caller) that ``zlperf check`` evaluates.

Each limit names a metric of the report document's group entries (``contention_ratio``, ``wait_ns.p99``, ...)
or of its holders (``not_traced_share``); here they are read, validated with file:line:column and merged.
"""

from __future__ import annotations

__all__ = ["METRICS", "SCOPES", "Metric", "Budget", "parse_budgets", "merge_budgets", "budget_list",
           "format_value", "MAX_BUDGETS"]

import difflib
import math
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from zlperf.recipes.model import Mark, Recipe
from zlperf.recipes.yamldoc import Problems, YamlDoc, one_line


@dataclass(frozen=True)
class Metric:
    """One budgetable value of the report: its unit, what the recording must show for it, and where it applies."""

    unit: str  #: "ns", "share" (0..1), "/s", "count" or "CPUs"
    needs: str  #: the recording capability it needs: contended_events, acquisitions, contended, waits, holds, holders
    meaning: str
    scopes: Tuple[str, ...] = ("total", "zones", "callers")


_STATS = {"count": "how many", "sum": "their sum", "max": "the longest", "mean": "the mean",
          "p50": "the median", "p90": "the 90th percentile", "p99": "the 99th percentile",
          "p999": "the 99.9th percentile"}

#: Every metric a budget may limit. A measured value above the limit is over budget.
METRICS: Dict[str, Metric] = {
    "contended_events": Metric("count", "contended_events", "contended events"),
    "contended_per_sec": Metric("/s", "contended_events", "contended events per second of the window"),
    "acquisitions": Metric("count", "acquisitions", "traced acquisitions"),
    "contended": Metric("count", "contended", "contended acquisitions"),
    "contention_ratio": Metric("share", "contended", "contended acquisitions / all acquisitions"),
    "spinning_cpus": Metric("CPUs", "waits", "wait total / window: CPUs spinning on the lock on average"),
    "held_fraction": Metric("share", "holds", "hold total / window: share of the time the lock was held"),
    "unmatched_unlocks": Metric("count", "holds", "releases without an acquisition before them"),
    "unreleased": Metric("count", "holds", "acquisitions never released"),
    "broken_by_missed": Metric("count", "holds", "pairs broken by events the kernel lost"),
    **{f"wait_ns.{k}": Metric("count" if k == "count" else "ns", "waits", f"waits: {v}") for k, v in _STATS.items()},
    **{f"hold_ns.{k}": Metric("count" if k == "count" else "ns", "holds", f"holds: {v}") for k, v in _STATS.items()},
    "not_traced_share": Metric("share", "holders", "share of waits behind a holder the tracepoints do not see",
                               ("total", "callers")),
    "missed_events": Metric("count", "", "events the kernel reported lost", ("total",)),
}

#: Where budgets apply: the totals, every matching zone, every matching caller.
SCOPES = ("total", "zones", "callers")

#: Most budgets one recipe may set (a CI gate has a handful; thousands are generated input, not a recipe).
MAX_BUDGETS = 1000
_MAX_LIMIT = float(1 << 63)
_SELECTOR_RE = re.compile(r"^[^\s\x00-\x1f\x7f]{1,200}$")
_DURATION_RE = re.compile(r"^\s*(?P<n>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>ns|us|µs|ms|s)\s*$")
_PERCENT_RE = re.compile(r"^\s*(?P<n>[0-9]+(?:\.[0-9]+)?)\s*%\s*$")
_NS_PER = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}


@dataclass(frozen=True)
class Budget:
    """One limit to check: ``metric`` of the totals, or of each zone / caller that ``selector`` matches."""

    metric: str
    limit: float
    scope: str  #: "total", "zones" or "callers"
    selector: str  #: "" for the totals; a zone or caller name, or "*" for every one
    mark: Mark  #: where the recipe sets it

    @property
    def key(self) -> str:
        """The recipe key path of this budget, as errors name it."""
        return f"budgets.{self.metric}" if self.scope == "total" else f"budgets.{self.scope}.{self.selector}.{self.metric}"


def format_value(metric: str, value: float) -> str:
    """A measured value or limit for a one-line message, in the metric's unit (exact integers kept)."""
    unit = METRICS[metric].unit if metric in METRICS else ""
    if unit == "ns":
        exact = f"{int(value)} ns" if float(value).is_integer() else f"{value:.6g} ns"
        for div, name in ((1e9, "s"), (1e6, "ms"), (1e3, "us")):
            if value >= div:
                return f"{exact} ({value / div:.3g}{name})"
        return exact
    if unit == "share":
        return f"{value:.6g} ({value * 100:.4g}%)"
    if unit == "count":
        return f"{int(value)}" if float(value).is_integer() else f"{value:.6g}"
    return f"{value:.6g}{unit if unit == '/s' else ' ' + unit}"


def _limit(metric: str, value: Any) -> Tuple[Optional[float], Optional[str]]:
    """(the limit, None) or (None, what is wrong with ``value`` as a limit of ``metric``)."""
    unit = METRICS[metric].unit
    if isinstance(value, str) and unit == "ns" and _DURATION_RE.match(value):
        m = _DURATION_RE.match(value)
        assert m is not None
        value = float(m.group("n")) * _NS_PER[m.group("unit")]
    elif isinstance(value, str) and unit == "share" and _PERCENT_RE.match(value):
        m = _PERCENT_RE.match(value)
        assert m is not None
        value = float(m.group("n")) / 100
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = {"ns": "nanoseconds (or text such as 50us, 2ms)", "share": "a share from 0 to 1 (or text such as 2%)"}
        shown = repr(value)[:40] if isinstance(value, str) else type(value).__name__
        return None, f"must be a number of {kind.get(unit, unit)}, got {one_line(shown)}"
    if isinstance(value, int) and value.bit_length() > 64:
        return None, f"a {value.bit_length()}-bit number is larger than any measured value"
    number = float(value)
    if not math.isfinite(number) or number < 0 or number >= _MAX_LIMIT:
        return None, f"{one_line(repr(value))[:40]} is not a limit zlperf can compare with (0 or more, below 2^63)"
    if unit == "share" and number > 1:
        return None, f"{number:g} is more than 1: a share is from 0 to 1 (write {number:g}% as {number / 100:g} or '{number:g}%')"
    # Whole numbers stay whole (nanoseconds, counts), so `zlperf recipes show` prints them as written.
    return (int(number) if unit != "share" and number.is_integer() else number), None


def _metrics(values: Any, path: str, scope: str, doc: YamlDoc, errs: Problems) -> Dict[str, Optional[float]]:
    """The METRIC: LIMIT pairs of one mapping (bad ones reported and dropped; null kept: it removes one inherited)."""
    out: Dict[str, Optional[float]] = {}
    for metric, value in values.items():
        mpath = f"{path}.{metric}"
        if metric not in METRICS:
            known = list(METRICS) + (["zones", "callers"] if scope == "total" else [])
            close = difflib.get_close_matches(str(metric), known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "metrics: " + ", ".join(
                m for m in METRICS if not m.startswith(("wait_ns.", "hold_ns."))) + ", wait_ns.p99, hold_ns.max, ..."
            errs.error(doc.kmark(mpath), one_line(mpath)[:120], f"unknown metric ({hint})")
            continue
        if scope not in METRICS[metric].scopes:
            where = " and ".join({"total": "overall", "zones": "per zone", "callers": "per caller"}[s]
                                 for s in METRICS[metric].scopes)
            errs.error(doc.kmark(mpath), mpath, f"{metric} is measured {where} only (the report has no "
                                                f"{'zone' if scope == 'zones' else 'caller'} breakdown of it)")
            continue
        if value is None:
            out[metric] = None
            continue
        limit, problem = _limit(metric, value)
        if problem:
            errs.error(doc.vmark(mpath), mpath, problem)
            continue
        out[metric] = limit
    return out


def parse_budgets(value: Any, doc: YamlDoc, errs: Problems) -> Optional[Dict[str, Dict[str, Any]]]:
    """The ``budgets:`` of one file as {"total": ..., "zones": ..., "callers": ...}; None when it is not a mapping.

    Each problem is reported at its file:line:column and the entry dropped, so every problem shows at once.
    """
    if not isinstance(value, dict):
        errs.error(doc.vmark("budgets"), "budgets", "must be a mapping of METRIC: LIMIT (and zones:, callers:)")
        return None
    out: Dict[str, Dict[str, Any]] = {"total": {}, "zones": {}, "callers": {}}
    count = 0
    for key, inner in value.items():
        path = f"budgets.{key}"
        if key in ("zones", "callers"):
            if not isinstance(inner, dict):
                errs.error(doc.vmark(path), path, f"must be a mapping of {key[:-1]} name (or '*') to METRIC: LIMIT")
                continue
            for sel, metrics in inner.items():
                spath = f"{path}.{sel}"
                if not isinstance(sel, str) or not _SELECTOR_RE.match(sel):
                    errs.error(doc.kmark(spath), path, f"{one_line(repr(sel))[:60]} is not a {key[:-1]} name "
                               f"(e.g. {'1:Normal' if key == 'zones' else 'free_one_page'}, or '*' for every one)")
                    continue
                if metrics is None:
                    out[key][sel] = None  # removes the inherited budgets of this zone / caller
                    continue
                if not isinstance(metrics, dict):
                    hint = (f" ({sel} is a metric: name the {key[:-1]} first, e.g. {key}: {{'*': {{{sel}: ...}}}})"
                            if sel in METRICS else "")
                    errs.error(doc.vmark(spath), spath, f"must be a mapping of METRIC: LIMIT{hint}")
                    continue
                out[key][sel] = _metrics(metrics, spath, key, doc, errs)
                count += len(out[key][sel])
        else:
            got = _metrics({key: inner}, "budgets", "total", doc, errs)
            out["total"].update(got)
            count += len(got)
        if count > MAX_BUDGETS:
            errs.error(doc.vmark(path), path, f"more than {MAX_BUDGETS} budgets: a recipe sets a handful")
            return None
    return out


def merge_budgets(base: Dict[str, Dict[str, Any]], over: Dict[str, Dict[str, Any]]) -> Dict[str, Dict[str, Any]]:
    """``over`` (a file's budgets) on ``base`` (what it extends): per metric, per zone / caller; null removes."""
    out: Dict[str, Dict[str, Any]] = {"total": dict(base.get("total", {})),
                                      "zones": {s: dict(m) for s, m in base.get("zones", {}).items()},
                                      "callers": {s: dict(m) for s, m in base.get("callers", {}).items()}}
    for metric, limit in over.get("total", {}).items():
        if limit is None:
            out["total"].pop(metric, None)
        else:
            out["total"][metric] = limit
    for scope in ("zones", "callers"):
        for sel, metrics in over.get(scope, {}).items():
            if metrics is None:
                out[scope].pop(sel, None)
                continue
            target = out[scope].setdefault(sel, {})
            for metric, limit in metrics.items():
                if limit is None:
                    target.pop(metric, None)
                else:
                    target[metric] = limit
            if not target:
                del out[scope][sel]
    return {k: v for k, v in out.items() if v}


def budget_list(recipe: Recipe) -> List[Budget]:
    """The recipe's budgets, one per (metric, scope, selector), in the order the recipe gives them."""
    out: List[Budget] = []
    top = (recipe.path, 1, 1)
    for metric, limit in recipe.budgets.get("total", {}).items():
        key = f"budgets.{metric}"
        out.append(Budget(metric, limit, "total", "", recipe.marks.get(key, top)))
    for scope in ("zones", "callers"):
        for sel, metrics in recipe.budgets.get(scope, {}).items():
            for metric, limit in metrics.items():
                key = f"budgets.{scope}.{sel}.{metric}"
                out.append(Budget(metric, limit, scope, sel, recipe.marks.get(key, top)))
    return out
