"""Independent pooled numbers of many recordings (a fleet), from `trace-cmd report` / `perf script` TEXT.

Shares no code with zlperf: the lines come from tests/truth.py and tests/perf_truth.py (plain parses of
what the reference tools print); here every wait and hold value of every file is kept in a plain list
per zone and caller, the lists of all files are concatenated, and the textbook statistics (sorted list,
nearest rank) are taken over the pooled values. zlperf fleet must print exactly these numbers.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import perf_truth
import truth

#: The statistics compared (tests/truth.py's nearest-rank textbook definitions).
STAT_KEYS = ("count", "sum", "min", "max", "p50", "p90", "p99")


def _group() -> dict:
    return {"contended_events": 0, "acquisitions": 0, "contended": 0, "wait": [], "hold": []}


def _records(path: Path, kallsyms=None) -> list[tuple]:
    """(ts, cpu, event, zone, caller, contended, wait) of each mm_zone_lock_* line, and ("DROP", cpu)."""
    out: list[tuple] = []
    if str(path).endswith(".perf.data"):
        sym = perf_truth.Symbols(kallsyms)
        for s in perf_truth.parse(path):
            if s.event.startswith("kmem:mm_zone_lock"):
                f = s.f
                out.append((s.ts, s.cpu, s.event.split(":")[1], f"{f['node']}:{f['zone']}",
                            sym(int(f["caller"], 16)), f.get("contended") == "1", int(f.get("wait", 0))))
        return out
    for item in truth.parse(path).stream:
        if isinstance(item, tuple):
            out.append(("DROP", item[1]))
        else:
            f = item.f
            out.append((item.ts, item.cpu, item.event, f"{f['node']}:{f['zone']}", f.get("caller"),
                        f.get("contended") == "1", int(f.get("wait", 0))))
    return out


def values(path: Path, kallsyms=None) -> dict:
    """{"zones": {label: group}, "callers": {symbol: group}, "totals": group} of one recording, where a
    group holds its counters and every wait and hold value (holds: per-CPU pairing, as tests/truth.py)."""
    zones: dict = defaultdict(_group)
    callers: dict = defaultdict(_group)
    totals = _group()
    last_on_cpu: dict = {}
    for rec in _records(path, kallsyms):
        if rec[0] == "DROP":
            last_on_cpu[rec[1]] = "DROP"
            continue
        ts, cpu, event, zone, caller, contended, wait = rec
        if event == "mm_zone_lock_contended":
            for g in (zones[zone], callers[caller], totals):
                g["contended_events"] += 1
        elif event == "mm_zone_locked":
            for g in (zones[zone], callers[caller], totals):
                g["acquisitions"] += 1
                if contended:
                    g["contended"] += 1
                    g["wait"].append(wait)
            last_on_cpu[cpu] = rec
        elif event == "mm_zone_lock_unlock":
            prev = last_on_cpu.get(cpu)
            if isinstance(prev, tuple) and prev[2] == "mm_zone_locked" and prev[3] == zone:
                for g in (zones[zone], callers[prev[4]], totals):
                    g["hold"].append(ts - prev[0])
            last_on_cpu[cpu] = rec
    return {"zones": dict(zones), "callers": dict(callers), "totals": totals}


def pooled(files: list[tuple]) -> dict:
    """The pooled numbers of ``files`` ((path, kallsyms or None) pairs): counters summed, value lists
    concatenated, then the statistics of each pooled list."""
    zones: dict = defaultdict(_group)
    callers: dict = defaultdict(_group)
    totals = _group()
    for path, kallsyms in files:
        v = values(path, kallsyms)
        for into, part in ((zones, v["zones"]), (callers, v["callers"])):
            for key, g in part.items():
                _add(into[key], g)
        _add(totals, v["totals"])
    return {"zones": {k: _stats(g) for k, g in zones.items()},
            "callers": {k: _stats(g) for k, g in callers.items()},
            "totals": _stats(totals)}


def _add(into: dict, g: dict) -> None:
    for k in ("contended_events", "acquisitions", "contended"):
        into[k] += g[k]
    into["wait"] += g["wait"]
    into["hold"] += g["hold"]


def _stats(g: dict) -> dict:
    out = {k: g[k] for k in ("contended_events", "acquisitions", "contended")}
    for name in ("wait", "hold"):
        s = truth.stats(g[name])
        out[f"{name}_ns"] = {k: s[k] for k in STAT_KEYS}
        out[f"{name}_values"] = sorted(g[name])
    return out
