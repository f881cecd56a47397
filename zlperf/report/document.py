"""The one writer of the ``zlperf.report/1`` JSON document, from an :class:`AnalysisResult`.

``zlperf report --json``, ``zlperf merge``, ``zlperf diff`` and every exporter go through
:func:`build_document`, so a document from one recording and one merged from many hosts have the
same keys. Values a recording cannot tell are ``null``; counts it saw none of are 0. The keys are
listed, with what each means, in docs/report_example.txt.
"""

from __future__ import annotations

__all__ = ["SCHEMA", "build_document", "group_entry", "stats_dict"]

from typing import Any, Optional

from zlperf import __version__
from zlperf.analysis.model import Capabilities
from zlperf.analysis.result import (
    AnalysisResult, CallerKey, CpuKey, Group, Holders, HostSummary, Stats, TaskKey, ZoneKey)
from zlperf.analysis.stats import empty_stats
from zlperf.analysis.timeline import COLUMNS as TIMELINE_COLUMNS

SCHEMA = "zlperf.report/1"


def stats_dict(stats: Stats, allowed: bool) -> Optional[dict]:
    """STATS of a distribution, or None when the recording cannot tell; count 0 (and null values)
    when it saw none."""
    if not allowed:
        return None
    return stats.summary() or empty_stats()


def _hex(v: Optional[int]) -> Optional[str]:
    return None if v is None else f"{v:#x}"


def _key_fields(key: Any) -> dict[str, Any]:
    """The identity columns of a group entry, per dimension."""
    if isinstance(key, ZoneKey):
        return {"node": key.node, "zone": key.name, "label": key.label, "lock_addr": _hex(key.lock_addr),
                "zone_ptr": _hex(key.zone_ptr)}
    if isinstance(key, CallerKey):
        return {"caller": key.symbol, "addr": _hex(key.addr), "role": key.role}
    if isinstance(key, CpuKey):
        return {"cpu": key.cpu, **({"host": key.host} if key.host is not None else {})}
    if isinstance(key, TaskKey):
        return {"pid": key.pid, "comm": key.comm, **({"host": key.host} if key.host is not None else {})}
    return {}


def group_entry(g: Group, caps: Capabilities, duration_ns: int, merged: bool = False) -> dict[str, Any]:
    """One row of a group table (or the totals): counters, rates, STATS, shares of the window."""
    secs = duration_ns / 1e9 if duration_ns > 0 else 0.0
    c = g.counts
    knows_contended = caps.acquisitions and caps.contended_flag
    entry: dict[str, Any] = {
        **_key_fields(g.key),
        "contended_events": c.contended_events if caps.contended_events else None,
        "contended_per_sec": (c.contended_events / secs) if secs and caps.contended_events else None,
        "acquisitions": c.acquisitions if caps.acquisitions else None,
        "contended": c.contended if knows_contended else None,
        "contention_ratio": (c.contended / c.acquisitions) if knows_contended and c.acquisitions else None,
        "wait_ns": stats_dict(g.wait, caps.waits),
        "hold_ns": stats_dict(g.hold, caps.holds),
        # Average number of CPUs spinning on the lock, and the fraction of time it was held.
        "spinning_cpus": (g.wait.total / duration_ns) if caps.waits and duration_ns > 0 else None,
        "held_fraction": (g.hold.total / duration_ns) if caps.holds and duration_ns > 0 else None,
        "unmatched_unlocks": c.unmatched_unlocks if caps.holds else None,
        "unreleased": c.unreleased if caps.holds else None,
        "broken_by_missed": c.broken_by_missed if caps.holds else None,
    }
    if isinstance(g.key, (ZoneKey, CallerKey)):
        entry["slices"] = _slices(g)
    else:  # CPUs and tasks are per host, never pooled by merge: their log-linear histograms would be dead weight
        for s in ("wait_ns", "hold_ns"):
            if entry[s] is not None and isinstance(g.key, (CpuKey, TaskKey)):
                entry[s].pop("hist_loglinear", None)
    if merged:
        entry["hosts"] = g.hosts
    return entry


def _slices(g: Group) -> Optional[dict[str, list]]:
    """Per-slice counters of one zone/caller (the run's own noise, which ``zlperf diff`` compares against)."""
    if g.slices is None:
        return None
    out: dict[str, list] = {}
    for i, col in enumerate(TIMELINE_COLUMNS):
        out[col] = g.slices[:, i].tolist() if col.endswith("_ns") else g.slices[:, i].astype(int).tolist()
    return out


def _timeline(r: AnalysisResult) -> dict:
    tl = r.timeline
    bins: list[dict] = [{"t_ns": tl.start_ns + i * tl.bin_ns,
                         **{c: (float(v) if c.endswith("_ns") else int(v)) for c, v in zip(tl.columns, row)}}
                        for i, row in enumerate(tl.values)]
    if tl.wait_log2 is not None:  # the latency heatmap: each bin's waits per log2 bucket (trailing zeros dropped)
        for b, hist in zip(bins, tl.wait_log2.tolist()):
            while hist and not hist[-1]:
                hist.pop()
            b["wait_hist_log2"] = [int(x) for x in hist]
    return {"bin_ns": tl.bin_ns, "start_ns": tl.start_ns, "bins": bins}


def _worst(rows, col: str, holders: bool) -> list[dict]:
    out = []
    for w in rows:
        row = {col: w.value_ns, "ts_ns": w.ts_ns, "cpu": w.cpu, "pid": w.pid, "comm": w.comm, "zone": w.zone,
               "caller": w.caller}
        if w.count is not None:
            row["count"] = w.count
        if w.host is not None:
            row["host"] = w.host
        if holders and col == "wait_ns":
            row["holder"] = None if w.holder is None else dict(w.holder.__dict__)
        out.append(row)
    return out


def _holders(h: Optional[Holders]) -> Optional[dict]:
    """Who made them wait: totals, the costliest holders and the convoy lengths (handoffs are apart)."""
    if h is None:
        return None
    return {
        "waits": h.waits, "wait_ns_sum": h.wait_ns_sum, "not_traced": h.not_traced,
        "not_traced_wait_ns_sum": h.not_traced_wait_ns_sum, "no_acquisition_seen": h.no_acquisition_seen,
        "handed_off": h.handed_off, "uncontended": h.uncontended,
        "by_caller": [{"holder_caller": c, "waits": n, "wait_ns_sum": w} for c, n, w in h.by_caller],
        "top": [{"caller": c.caller, "pid": c.pid, "comm": c.comm, "cpu": c.cpu, "waits": c.waits,
                 "wait_ns_sum": c.wait_ns_sum, **({"host": c.host} if c.host is not None else {})} for c in h.top],
        "convoys": [{"length": length, "chains": n} for length, n in sorted(h.convoys.items())],
    }


def _host_row(h: HostSummary) -> dict[str, Any]:
    """One row of a fleet report's ``hosts`` table."""
    secs = h.duration_ns / 1e9 if h.duration_ns > 0 else 0.0
    wait = h.wait.summary() if h.wait is not None else None
    hold = h.hold.summary() if h.hold is not None else None
    return {
        "host": h.host, "kernel": h.kernel, "recording": h.recording, "profile": h.profile,
        "duration_ns": h.duration_ns, "cpus": h.cpus,
        "contended_events": h.contended_events,
        "contended_per_sec": (h.contended_events / secs) if secs and h.contended_events is not None else None,
        "acquisitions": h.acquisitions, "contended": h.contended,
        "contention_ratio": (h.contended / h.acquisitions) if h.acquisitions and h.contended is not None else None,
        "waits": None if h.wait is None else h.wait.count,
        "wait_ns_sum": None if h.wait is None else h.wait.total,
        "wait_p99_ns": wait["p99"] if wait else None,
        "hold_p99_ns": hold["p99"] if hold else None,
    }


def build_document(r: AnalysisResult) -> dict:
    """The ``zlperf.report/1`` document of a result (the only function that writes one)."""
    caps = r.capabilities
    merged = bool(r.merged_from)
    duration = r.duration_ns

    def entries(groups: list[Group]) -> list[dict]:
        return [group_entry(g, caps, duration, merged) for g in groups]

    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "zlperf_version": __version__,
        "source": {"path": r.source.path, "format": r.source.format, "clock": r.source.clock, "cpus": r.source.cpus,
                   "kallsyms": r.source.kallsyms},
        "abi": caps.abi,
        "profile": caps.profile,
        "can_show": {"contended_events": caps.contended_events, "acquisitions": caps.acquisitions,
                     "waits": caps.waits, "holds": caps.holds, "holders": r.holders is not None},
        # What a wait is in this ABI: the spin of a contended acquisition, or every acquisition's wait.
        "wait_is": caps.wait_is,
        "cannot_show": list(caps.cannot),
        "notes": list(caps.notes),
        "window": {"first_ts_ns": r.window.first_ts_ns, "last_ts_ns": r.window.last_ts_ns,
                   "since_ns": r.window.since_ns, "until_ns": r.window.until_ns, "zone": r.window.zone},
        "duration_ns": duration,
        "cpu_time_ns": r.cpu_time_ns,
        "events": dict(r.events),
        "missed_events": r.missed.events,
        "missed_events_unknown_gaps": r.missed.unknown_gaps,
        "missed_by_cpu": dict(r.missed.by_cpu),
        "kernel_overrun": r.missed.kernel_overrun,
        "kernel_dropped_events": r.missed.kernel_dropped_events,
        "totals": group_entry(r.totals, caps, duration, merged),
        "zones": entries(r.zones),
        "callers": entries(r.callers),
        "cpus": entries(r.cpus),
        "tasks": entries(r.tasks),
        "hold_by_batch": [{"batch_min": b.low, "batch_max": b.high, "hold_ns": stats_dict(b.hold, True)}
                          for b in r.hold_by_batch] if caps.holds else [],
        "timeline": _timeline(r),
        "top_waits": _worst(r.top_waits, "wait_ns", r.holders is not None) if caps.waits else [],
        "top_holds": _worst(r.top_holds, "hold_ns", False) if caps.holds else [],
        # Who made them wait: every (waiter caller, holder caller) pair, and the holders' totals.
        "handoffs": [{"waiter_caller": x.waiter_caller, "holder_caller": x.holder_caller, "waits": x.waits,
                      "wait_ns_sum": x.wait_ns_sum} for x in (r.holders.handoffs if r.holders else [])],
        "holders": _holders(r.holders),
        # Kernel stacks of contended events (innermost frame first), when recorded with stacks.
        "contended_stacks": [{"count": s.count, "frames": list(s.frames)} for s in r.stacks],
        "warnings": list(r.warnings),
    }
    if merged:
        doc["merged_from"] = [dict(m) for m in r.merged_from]
    doc.update(r.merge_notes)
    if r.hosts:
        doc["hosts"] = [_host_row(h) for h in r.hosts]
    return doc
