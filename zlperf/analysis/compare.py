"""Comparing and combining report documents: ``zlperf diff`` and ``zlperf merge``.

diff: per zone and caller, the relative change of each metric between two recordings, flagged
when it exceeds the run-to-run noise the recordings themselves show (the spread of the metric
across equal time slices of each run, see summary.SLICES).

merge: many hosts' summaries into one. Counts, sums, min and max are exact; log2 histograms
merge exactly; percentiles of the merge come from the merged histogram and say so.
"""

from __future__ import annotations

__all__ = ["diff_reports", "merge_reports", "load_report", "NOISE_SIGMAS"]

import json
import math
from typing import Any, Optional

from zlperf.analysis.stats import empty_stats, stats_from_log2
from zlperf.analysis.summary import SCHEMA
from zlperf.errors import ZlperfError

#: A change is flagged when it exceeds this many standard errors of the two runs' noise.
NOISE_SIGMAS = 3.0


def load_report(path: str) -> dict:
    """Read a ``zlperf report --json`` document, checking its schema."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise ZlperfError(f"{path}: cannot read ({exc.strerror})")
    except json.JSONDecodeError as exc:
        raise ZlperfError(f"{path}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg}); give `zlperf report --json` output")
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ZlperfError(f"{path}: not a {SCHEMA} document (make one with `zlperf report --json FILE`)")
    return doc


# -- diff ------------------------------------------------------------------------------------

def _slice_series(entry: dict, metric: str, duration_ns: int) -> list[float]:
    """Per-slice values of ``metric`` for one zone/caller (empty slices skipped for means)."""
    s = entry.get("slices")
    if not s or duration_ns <= 0:
        return []
    k = len(s["contended_events"])  # equal slices of the recording
    slice_s = duration_ns / 1e9 / k
    if metric == "contended_per_sec":
        return [c / slice_s for c in s["contended_events"]]
    if metric == "acquisitions_per_sec":
        return [c / slice_s for c in s["acquisitions"]]
    if metric == "wait_mean_ns":
        return [t / n for t, n in zip(s["wait_sum_ns"], s["waits"]) if n]
    if metric == "hold_mean_ns":
        return [t / n for t, n in zip(s["hold_sum_ns"], s["holds"]) if n]
    return []


def _std_err(values: list[float]) -> Optional[float]:
    if len(values) < 2:
        return None
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return math.sqrt(var / len(values))


def _metric(entry: Optional[dict], metric: str, duration_ns: int) -> Optional[float]:
    if entry is None:
        return 0.0 if metric.endswith("per_sec") else None
    secs = duration_ns / 1e9
    if metric == "contended_per_sec":
        return entry["contended_events"] / secs if secs and entry["contended_events"] is not None else None
    if metric == "acquisitions_per_sec":
        return entry["acquisitions"] / secs if secs and entry.get("acquisitions") is not None else None
    if metric == "contention_ratio":
        return entry.get("contention_ratio")
    kind, stat = metric.split("_", 1)[0], metric.rsplit("_", 2)[-2]  # wait_p99_ns -> wait, p99
    st = entry.get(f"{kind}_ns")
    if not st or not st.get("count"):
        return None
    return float(st["mean"]) if stat == "mean" else float(st[stat])


_METRICS = ("contended_per_sec", "acquisitions_per_sec", "contention_ratio", "wait_mean_ns", "wait_p50_ns",
            "wait_p99_ns", "hold_mean_ns", "hold_p50_ns", "hold_p99_ns")
_NOISY = {"contended_per_sec", "acquisitions_per_sec", "wait_mean_ns", "hold_mean_ns"}


def diff_reports(a: dict, b: dict) -> dict:
    """Per zone and caller, each metric in A and B, relative change, noise and a flag."""
    out: dict[str, Any] = {"schema": "zlperf.diff/1", "a": a["source"]["path"], "b": b["source"]["path"],
                           "noise_sigmas": NOISE_SIGMAS, "groups": []}
    for dim, key in (("zones", "label"), ("callers", "caller")):
        ea = {e[key]: e for e in a[dim]}
        eb = {e[key]: e for e in b[dim]}
        for name in sorted(set(ea) | set(eb)):
            x, y = ea.get(name), eb.get(name)
            rows = []
            for metric in _METRICS:
                va, vb = _metric(x, metric, a["duration_ns"]), _metric(y, metric, b["duration_ns"])
                if va is None and vb is None:
                    continue
                row: dict[str, Any] = {"metric": metric, "a": va, "b": vb, "change": None, "noise": None,
                                       "significant": None}
                if va is not None and vb is not None:
                    row["change"] = (vb - va) / va if va else (math.inf if vb else 0.0)
                    if metric in _NOISY:
                        se_a = _std_err(_slice_series(x, metric, a["duration_ns"])) if x else 0.0
                        se_b = _std_err(_slice_series(y, metric, b["duration_ns"])) if y else 0.0
                        if se_a is not None and se_b is not None:
                            noise = NOISE_SIGMAS * math.sqrt(se_a ** 2 + se_b ** 2)
                            row["noise"] = noise
                            row["significant"] = abs(vb - va) > noise
                rows.append(row)
            out["groups"].append({"dimension": dim[:-1], "name": name, "in_a": x is not None, "in_b": y is not None,
                                  "metrics": rows})
    return out


# -- merge -----------------------------------------------------------------------------------

def _merge_stats(parts: list[Optional[dict]]) -> Optional[dict]:
    if any(p is None for p in parts):
        return None  # some recording cannot tell
    parts = [p for p in parts if p["count"]]
    if not parts:
        return empty_stats()
    if len(parts) == 1:
        return parts[0]
    width = max(len(p["hist_log2"]) for p in parts)
    hist = [sum(p["hist_log2"][i] if i < len(p["hist_log2"]) else 0 for p in parts) for i in range(width)]
    return stats_from_log2(hist, sum(p["count"] for p in parts), sum(p["sum"] for p in parts),
                           min(p["min"] for p in parts), max(p["max"] for p in parts))


def _sum_opt(values: list[Optional[int]]) -> Optional[int]:
    """Sum, or None when any recording could not tell (a partial sum would mislead)."""
    return None if any(v is None for v in values) else sum(values)


def _merge_entries(entries: list[dict], duration_ns: int) -> dict:
    out: dict[str, Any] = {}
    for k in ("contended_events", "acquisitions", "contended", "unmatched_unlocks", "unreleased", "broken_by_missed"):
        out[k] = _sum_opt([e.get(k) for e in entries]) if any(k in e for e in entries) else None
    secs = duration_ns / 1e9
    out["contended_per_sec"] = out["contended_events"] / secs if secs and out["contended_events"] is not None else None
    acq, cont = out.get("acquisitions"), out.get("contended")
    out["contention_ratio"] = cont / acq if acq and cont is not None else None
    out["wait_ns"] = _merge_stats([e.get("wait_ns") for e in entries])
    out["hold_ns"] = _merge_stats([e.get("hold_ns") for e in entries])
    # Per recording-second, like the rates: durations of the merged recordings add up.
    out["spinning_cpus"] = out["wait_ns"]["sum"] / duration_ns if out["wait_ns"] and duration_ns else None
    out["held_fraction"] = out["hold_ns"]["sum"] / duration_ns if out["hold_ns"] and duration_ns else None
    return out


def merge_reports(docs: list[dict], names: list[str]) -> dict:
    """One document for many recordings (hosts). Durations add up (host-seconds)."""
    if not docs:
        raise ZlperfError("merge: give at least one report")
    duration = sum(d["duration_ns"] for d in docs)
    events: dict[str, int] = {}
    for d in docs:
        for k, v in d["events"].items():
            events[k] = events.get(k, 0) + v
    profiles = sorted({d["profile"] for d in docs})
    can = {k: all(d["can_show"][k] for d in docs) for k in docs[0]["can_show"]}
    merged: dict[str, Any] = {
        "schema": SCHEMA,
        "zlperf_version": docs[0].get("zlperf_version"),
        "merged_from": [{"name": n, "path": d["source"]["path"], "profile": d["profile"],
                         "duration_ns": d["duration_ns"]} for n, d in zip(names, docs)],
        "source": {"path": f"merge of {len(docs)} reports", "format": "merged zlperf.report/1", "clock": None,
                   "cpus": sum(d["source"].get("cpus") or 0 for d in docs), "kallsyms": None},
        "abi": " + ".join(sorted({d["abi"] for d in docs})),
        "profile": profiles[0] if len(profiles) == 1 else "mixed: " + ", ".join(profiles),
        "can_show": can,
        "cannot_show": sorted({c for d in docs for c in d["cannot_show"]}),
        "window": {"first_ts_ns": 0, "last_ts_ns": duration, "since_ns": None, "until_ns": None, "zone": None},
        "duration_ns": duration,
        "duration_note": "sum of the merged recordings' durations (rates are per recording-second)",
        "percentiles_note": "percentiles of merged groups come from the merged log2 histograms (bucket upper bounds)",
        "events": dict(sorted(events.items())),
        "missed_events": sum(d["missed_events"] for d in docs),
        "missed_events_unknown_gaps": sum(d.get("missed_events_unknown_gaps", 0) for d in docs),
        "missed_by_cpu": {},
        "kernel_overrun": sum(d.get("kernel_overrun", 0) for d in docs),
        "kernel_dropped_events": sum(d.get("kernel_dropped_events", 0) for d in docs),
        "totals": _merge_entries([d["totals"] for d in docs], duration),
        "cpus": [], "tasks": [], "hold_by_batch": [],
        "timeline": {"bin_ns": 0, "start_ns": 0, "bins": []},
        "warnings": [f"{n}: {w}" for n, d in zip(names, docs) for w in d.get("warnings", [])],
    }
    for dim, key, extra in (("zones", "label", ("node", "zone", "lock_addr")), ("callers", "caller", ("role",))):
        groups: dict[str, list[dict]] = {}
        for d in docs:
            for e in d[dim]:
                groups.setdefault(e[key], []).append(e)
        rows = []
        for name, entries in groups.items():
            row = {key: name, **{x: entries[0].get(x) for x in extra}, "hosts": len(entries),
                   **_merge_entries(entries, duration)}
            rows.append(row)
        rows.sort(key=lambda r: (-(r["contended_events"] or 0), -(r["acquisitions"] or 0), r[key]))
        merged[dim] = rows
    for col in ("top_waits", "top_holds"):
        value = "wait_ns" if col == "top_waits" else "hold_ns"
        rows = [{**r, "host": n} for n, d in zip(names, docs) for r in d.get(col, [])]
        merged[col] = sorted(rows, key=lambda r: -r[value])[: max((len(d.get(col, [])) for d in docs), default=0)]
    return merged
