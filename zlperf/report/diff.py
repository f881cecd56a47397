"""Two report documents side by side: ``zlperf diff``, noise-aware.

Per zone and caller, each metric in A and B and its relative change, flagged when the change
exceeds the run-to-run noise the recordings themselves show: the spread of the metric across
equal time slices of each run (``slices`` in the document). A metric one recording cannot
measure is shown as unknown, never as 0; recordings of different ABIs or profiles are said so.
"""

from __future__ import annotations

__all__ = ["diff_documents", "NOISE_SIGMAS", "DIFF_SCHEMA"]

import math
from typing import Any, Optional

DIFF_SCHEMA = "zlperf.diff/1"
#: A change is flagged when it exceeds this many standard errors of the two runs' noise.
NOISE_SIGMAS = 3.0

_METRICS = ("contended_per_sec", "acquisitions_per_sec", "contention_ratio", "wait_mean_ns", "wait_p50_ns",
            "wait_p99_ns", "hold_mean_ns", "hold_p50_ns", "hold_p99_ns")
_NOISY = {"contended_per_sec", "acquisitions_per_sec", "wait_mean_ns", "hold_mean_ns"}
#: Which can_show flag a metric needs.
_NEEDS = {"contended_per_sec": "contended_events", "acquisitions_per_sec": "acquisitions",
          "contention_ratio": "acquisitions", "wait_mean_ns": "waits", "wait_p50_ns": "waits", "wait_p99_ns": "waits",
          "hold_mean_ns": "holds", "hold_p50_ns": "holds", "hold_p99_ns": "holds"}


def _slice_series(entry: dict, metric: str, duration_ns: int) -> list[float]:
    """Per-slice values of ``metric`` for one zone/caller (empty slices skipped for means)."""
    s = entry.get("slices")
    if not s or duration_ns <= 0:
        return []
    k = len(s["contended_events"])  # equal slices of the recording
    if not k:
        return []
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


def _metric(doc: dict, entry: Optional[dict], metric: str) -> Optional[float]:
    """``metric`` of one group of ``doc``; None when the recording cannot measure it or saw no value."""
    if not doc["can_show"].get(_NEEDS[metric]):
        return None
    duration_ns = doc["duration_ns"]
    if entry is None:  # the group is absent although the recording could have seen it: it had none
        return 0.0 if metric.endswith("per_sec") else None
    secs = duration_ns / 1e9
    if metric == "contended_per_sec":
        return entry["contended_events"] / secs if secs and entry.get("contended_events") is not None else None
    if metric == "acquisitions_per_sec":
        return entry["acquisitions"] / secs if secs and entry.get("acquisitions") is not None else None
    if metric == "contention_ratio":
        return entry.get("contention_ratio")
    kind, stat = metric.split("_", 1)[0], metric.rsplit("_", 2)[-2]  # wait_p99_ns -> wait, p99
    st = entry.get(f"{kind}_ns")
    if not st or not st.get("count"):
        return None
    return float(st["mean"]) if stat == "mean" else float(st[stat])


def _differences(a: dict, b: dict) -> list[str]:
    """What makes the two recordings not like for like."""
    out = []
    if a["abi"] != b["abi"]:
        out.append(f"different event ABIs: A read {a['abi']}; B read {b['abi']} (metrics one of them cannot "
                   "measure are shown as -)")
    if a["profile"] != b["profile"]:
        out.append(f"different profiles: A is {a['profile']}, B is {b['profile']}")
    if a.get("wait_is") != b.get("wait_is"):
        out.append(f"waits mean different things: A {a.get('wait_is')}; B {b.get('wait_is')}")
    return out


def diff_documents(a: dict, b: dict) -> dict:
    """The ``zlperf.diff/1`` document: per zone and caller, each metric in A and B, change, noise, flag."""
    out: dict[str, Any] = {"schema": DIFF_SCHEMA, "a": a["source"]["path"], "b": b["source"]["path"],
                           "noise_sigmas": NOISE_SIGMAS, "differences": _differences(a, b), "groups": []}
    for dim, key in (("zones", "label"), ("callers", "caller")):
        ea = {e[key]: e for e in a[dim]}
        eb = {e[key]: e for e in b[dim]}
        for name in sorted(set(ea) | set(eb)):
            x, y = ea.get(name), eb.get(name)
            rows = []
            for metric in _METRICS:
                va, vb = _metric(a, x, metric), _metric(b, y, metric)
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
