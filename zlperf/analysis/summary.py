"""The report as data: the ``zlperf.report/1`` JSON document every front end renders.

Built once from an :class:`~zlperf.analysis.core.Analyzer`; ``zlperf merge`` and ``zlperf
diff`` read the same document back from files, so everything a renderer needs is in it.
Keys of the contract (issue 4) are kept; values the recording cannot tell are ``null``.
"""

from __future__ import annotations

__all__ = ["SCHEMA", "Summary", "build_summary", "SLICES"]

from typing import TYPE_CHECKING, Any, Optional


from zlperf import __version__
from zlperf.analysis.stats import empty_stats
from zlperf.analysis.timeline import COLUMNS as TIMELINE_COLUMNS

if TYPE_CHECKING:
    from zlperf.analysis.core import Analyzer

SCHEMA = "zlperf.report/1"
#: Equal time slices each zone/caller is cut into to show the run's own noise (used by diff).
SLICES = 10
_DISPLAY_BINS = 40

#: A summary is the JSON document itself (a dict), so files and live results are alike.
Summary = dict


def _stats(dist, allowed: bool) -> Optional[dict]:
    """STATS, or None when the recording cannot tell; count 0 (and null values) when it saw none."""
    if not allowed:
        return None
    return dist.summary() or empty_stats()


def _group_entry(g, caps, duration_ns: int) -> dict[str, Any]:
    secs = duration_ns / 1e9 if duration_ns > 0 else 0.0
    knows_contended = caps.acquisitions and caps.contended_flag
    entry: dict[str, Any] = {
        "contended_events": g.contended_events if caps.contended_events else None,
        "contended_per_sec": (g.contended_events / secs) if secs and caps.contended_events else None,
        "acquisitions": g.acquisitions if caps.acquisitions else None,
        "contended": g.contended if knows_contended else None,
        "contention_ratio": (g.contended / g.acquisitions) if knows_contended and g.acquisitions else None,
        "wait_ns": _stats(g.wait, caps.waits),
        "hold_ns": _stats(g.hold, caps.holds),
        # Average number of CPUs spinning on the lock, and the fraction of time it was held.
        "spinning_cpus": (g.wait.total / duration_ns) if caps.waits and duration_ns > 0 else None,
        "held_fraction": (g.hold.total / duration_ns) if caps.holds and duration_ns > 0 else None,
        "unmatched_unlocks": g.unmatched_unlocks if caps.holds else None,
        "unreleased": g.unreleased if caps.holds else None,
        "broken_by_missed": g.broken_by_missed if caps.holds else None,
    }
    return entry


def _slices(an: "Analyzer", key, first_ts: int, last_ts: int) -> dict[str, list]:
    """Per-slice counters of one zone/caller: the run's own noise, which ``zlperf diff`` compares against."""
    sums = an.agg.timeline.slices(key, first_ts, last_ts, SLICES)
    out: dict[str, list] = {}
    for i, col in enumerate(TIMELINE_COLUMNS):
        out[col] = sums[:, i].tolist() if col.endswith("_ns") else sums[:, i].astype(int).tolist()
    return out


def _timeline(an: "Analyzer", first_ts: int, last_ts: int) -> dict:
    """The overall timeline in at most about _DISPLAY_BINS round bins covering the recording."""
    start, width, sums = an.agg.timeline.rebinned(("all", 0), first_ts, last_ts, _DISPLAY_BINS)
    return {
        "bin_ns": width,
        "start_ns": start,
        "bins": [
            {"t_ns": start + i * width, **{c: (float(v) if c.endswith("_ns") else int(v))
                                          for c, v in zip(TIMELINE_COLUMNS, row)}}
            for i, row in enumerate(sums)
        ],
    }


def build_summary(an: "Analyzer") -> Summary:
    """Turn an analyzer's accumulated state into the report document."""
    info, opts = an.info, an.options
    caps = an.abi.capabilities(an.event_counts)
    if not an.abi_found:
        caps.abi = "none: no kmem:mm_zone_lock_*, zone_lock:* or lock:contention_* events in this recording"
        caps.profile = "none"
        caps.cannot = ["anything about zone->lock: record with `zlperf record --profile minimal` (patched kernels) "
                       "or `--profile stock` (any kernel since 5.19)"]
    first = an.first_ts if an.first_ts is not None else 0
    last = an.last_ts if an.last_ts is not None else first
    lo = max(first, opts.since_ns) if opts.since_ns is not None else first
    hi = min(last, opts.until_ns) if opts.until_ns is not None else last
    duration = max(0, hi - lo)
    symbols = info.symbols

    def sym(addr: int) -> str:
        if addr == 0:
            return "(unknown: no stack recorded)"  # ABIs whose callers come from stacks only
        return symbols.symbolize(addr) if symbols is not None and len(symbols) else f"{addr:#x}"

    def entry(dim: str, key: int, g) -> dict:
        e = _group_entry(g, caps, duration)
        if dim in ("zone", "caller"):
            e["slices"] = _slices(an, (dim, key), lo, hi)
        return e

    zones = []
    for code, g in sorted(an.agg.dims["zone"].items(), key=lambda kv: an.zones.zones[kv[0]].label):
        z = an.zones.zones[code]
        zones.append({"node": z.node, "zone": z.name, "label": z.label,
                      "lock_addr": None if z.lock_addr is None else f"{z.lock_addr:#x}",
                      "zone_ptr": None if z.zone_ptr is None else f"{z.zone_ptr:#x}",
                      **entry("zone", code, g)})

    callers = []
    for addr, g in an.agg.dims["caller"].items():
        role = "lock" if (g.contended_events or g.acquisitions or g.wait.count or g.hold.count) else "unlock"
        callers.append({"caller": sym(addr), "addr": f"{addr:#x}", "role": role, **entry("caller", addr, g)})
    callers.sort(key=lambda c: (-(c["contended_events"] or 0), -(c["acquisitions"] or 0), c["caller"]))

    cpus = [{"cpu": cpu, **entry("cpu", cpu, g)} for cpu, g in sorted(an.agg.dims["cpu"].items())]
    tasks = [{"pid": pid, "comm": info.cmdlines.get(pid, "<...>"), **entry("task", pid, g)}
             for pid, g in an.agg.dims["task"].items()]
    tasks.sort(key=lambda t: (-(t["contended_events"] or 0), -(t["acquisitions"] or 0), t["pid"]))

    hold_by_batch = []
    if caps.holds:
        for bucket in sorted(an.agg.hold_by_batch):
            lo_b = 0 if bucket == 0 else 1 << (bucket - 1)
            hi_b = 0 if bucket == 0 else (1 << bucket) - 1
            hold_by_batch.append({"batch_min": lo_b, "batch_max": hi_b, "hold_ns": an.agg.hold_by_batch[bucket].summary()})

    def worst(top, col: str) -> list[dict]:
        rows = []
        for r in top.sorted_rows(col):
            z = an.zones.zones[r["zone"]] if r["zone"] >= 0 else None
            rows.append({col: r[col], "ts_ns": r["ts"], "cpu": r["cpu"], "pid": r["pid"],
                         "comm": info.cmdlines.get(r["pid"], "<...>"), "zone": z.label if z else None,
                         "caller": sym(r["caller"]), **({"count": r["count"]} if "count" in r else {})})
        return rows

    total = an.agg.dims["zone"].total()
    stacks = [{"count": count, "frames": [sym(int(a)) for a in frames]}
              for frames, count in sorted(an.agg.stacks.values(), key=lambda e: -e[1])]
    overrun = sum((s.overrun or 0) for s in info.cpu_stats.values())
    dropped = sum((s.dropped_events or 0) for s in info.cpu_stats.values())
    return {
        "schema": SCHEMA,
        "zlperf_version": __version__,
        "source": {"path": info.path, "format": info.format, "clock": info.clock, "cpus": info.cpus,
                   "kallsyms": getattr(symbols, "source", None) if symbols is not None else None},
        "abi": caps.abi,
        "profile": caps.profile,
        "can_show": {"contended_events": caps.contended_events, "acquisitions": caps.acquisitions,
                     "waits": caps.waits, "holds": caps.holds},
        # What a wait is in this ABI: the spin of a contended acquisition, or every acquisition's wait.
        "wait_is": ("contended acquisitions' spin (wait_ns)" if caps.contended_flag
                    else "every acquisition: start_locking -> acquire_returned"),
        "cannot_show": caps.cannot,
        "notes": caps.notes,
        "window": {"first_ts_ns": lo, "last_ts_ns": hi, "since_ns": opts.since_ns, "until_ns": opts.until_ns,
                   "zone": opts.zone},
        "duration_ns": int(duration),
        "events": dict(sorted(an.event_counts.items())),
        "missed_events": an.missed_events,
        "missed_events_unknown_gaps": an.missed_unknown_gaps,
        "missed_by_cpu": {str(k): v for k, v in sorted(an.missed_by_cpu.items())},
        "kernel_overrun": overrun,
        "kernel_dropped_events": dropped,
        "totals": _group_entry(total, caps, duration),
        "zones": zones,
        "callers": callers,
        "cpus": cpus,
        "tasks": tasks,
        "hold_by_batch": hold_by_batch,
        "timeline": _timeline(an, lo, hi),
        "top_waits": worst(an.agg.top_waits, "wait_ns") if caps.waits else [],
        "top_holds": worst(an.agg.top_holds, "hold_ns") if caps.holds else [],
        # Kernel stacks of contended events (innermost frame first), when recorded with stacks.
        "contended_stacks": stacks,
        "warnings": list(info.warnings),
    }
