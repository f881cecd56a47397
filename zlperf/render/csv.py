"""CSV rendering of the group tables of a report document (one row per zone/caller/cpu/task)."""

from __future__ import annotations

__all__ = ["render_csv"]

import csv
import io

_STAT_KEYS = ("count", "sum", "min", "max", "mean", "p50", "p90", "p99", "p999")
_KEYS = {"zone": ("node", "zone", "lock_addr"), "caller": ("caller", "addr", "role"), "cpu": ("cpu",),
         "task": ("pid", "comm")}
_LISTS = {"zone": "zones", "caller": "callers", "cpu": "cpus", "task": "tasks"}
_COUNTS = ("contended_events", "contended_per_sec", "acquisitions", "contended", "contention_ratio",
           "unmatched_unlocks", "unreleased", "broken_by_missed")


def render_csv(doc: dict, by: str = "zone") -> str:
    """CSV of one dimension; wait/hold STATS are flattened to wait_ns_p50, hold_ns_max, ...
    ``by="holder"``: the waiter caller x holder caller table (one row per pair); ``by="host"``: a fleet
    report's hosts."""
    buf = io.StringIO()
    if by == "host":  # fleet reports: one row per host
        hosts = doc.get("hosts") or []
        writer = csv.writer(buf, lineterminator="\n")
        header = list(hosts[0]) if hosts else ["host"]
        writer.writerow(header)
        for h in hosts:
            writer.writerow(["" if h.get(k) is None else h.get(k) for k in header])
        return buf.getvalue()
    if by == "holder":
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["waiter_caller", "holder_caller", "waits", "wait_ns_sum"])
        for x in doc.get("handoffs") or []:
            writer.writerow([x["waiter_caller"], x["holder_caller"], x["waits"], x["wait_ns_sum"]])
        return buf.getvalue()
    header = list(_KEYS[by]) + list(_COUNTS) + [f"{s}_{k}" for s in ("wait_ns", "hold_ns") for k in _STAT_KEYS]
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for e in doc[_LISTS[by]]:
        row = [e.get(k) for k in _KEYS[by]] + [e.get(k) for k in _COUNTS]
        for s in ("wait_ns", "hold_ns"):
            st = e.get(s) or {}
            row += [st.get(k) for k in _STAT_KEYS]
        writer.writerow(["" if v is None else v for v in row])
    return buf.getvalue()
