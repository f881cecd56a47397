"""Independent holder attribution from `trace-cmd report -t` / `perf script` text (no zlperf code).

The rules, as the obvious loops: releases are unlocks in printed order, each paired with the locked event
just before it on its CPU (same zone); a contended locked event's holder is the last release printed at or
before its timestamp, of its zone, on another CPU, unless that release is older than the wait began.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass

import perf_truth
import truth

NOT_TRACED = "(not traced)"
NO_ACQUISITION = "(no acquisition seen)"


@dataclass
class Rec:
    ts: int
    cpu: int
    pid: int
    event: str  # "locked", "unlock" or "gap"
    zone: str = ""
    caller: str = ""
    contended: bool = False
    wait: int = 0
    count: int = 0


def from_trace_cmd(path) -> list[Rec]:
    out = []
    for item in truth.parse(path).stream:
        if isinstance(item, tuple):
            out.append(Rec(0, item[1], -1, "gap"))
        elif item.event in ("mm_zone_locked", "mm_zone_lock_unlock"):
            f = item.f
            out.append(Rec(item.ts, item.cpu, item.pid, "locked" if item.event == "mm_zone_locked" else "unlock",
                           f"{f['node']}:{f['zone']}", f["caller"], f.get("contended") == "1", int(f.get("wait", 0)),
                           int(f["count"])))
    return out


def from_perf_script(path, kallsyms) -> list[Rec]:
    sym = perf_truth.Symbols(kallsyms)
    out = []
    for s in perf_truth.parse(path):
        if s.event in ("kmem:mm_zone_locked", "kmem:mm_zone_lock_unlock"):
            f = s.f
            out.append(Rec(s.ts, s.cpu, s.tid, "locked" if s.event == "kmem:mm_zone_locked" else "unlock",
                           f"{f['node']}:{f['zone']}", sym(int(f["caller"], 16)), f.get("contended") == "1",
                           int(f.get("wait", 0)), int(f["count"])))
    return out


def attribute(stream: list[Rec]) -> dict:
    """{"handoffs": {(waiter, holder): (waits, wait_ns_sum)}, "waits", "not_traced", "holder_of":
    {(ts, cpu): (release Rec, holder Rec or None)}} for one recording's printed stream."""
    last_on_cpu: dict = {}
    releases = defaultdict(list)  # zone -> [(ts, release, acquisition or None)] in printed order
    waits = []
    for r in stream:
        if r.event == "gap":  # the next release on that CPU has no acquisition
            last_on_cpu[r.cpu] = None
        elif r.event == "locked":
            if r.contended:
                waits.append(r)
            last_on_cpu[r.cpu] = r
        else:
            prev = last_on_cpu.get(r.cpu)
            paired = prev is not None and prev.event == "locked" and prev.zone == r.zone
            releases[r.zone].append((r.ts, r, prev if paired else None))
            last_on_cpu[r.cpu] = r
    times = {zone: [x[0] for x in rel] for zone, rel in releases.items()}
    handoffs: dict = defaultdict(lambda: [0, 0])
    holder_of = {}
    not_traced = 0
    for w in waits:
        rel = releases.get(w.zone, [])
        j = bisect.bisect_right(times.get(w.zone, []), w.ts) - 1
        while j >= 0 and rel[j][1].cpu == w.cpu:
            j -= 1
        if j < 0 or rel[j][0] < w.ts - w.wait:
            holder = NOT_TRACED
            not_traced += 1
        else:
            acquisition = rel[j][2]
            holder = acquisition.caller if acquisition is not None else NO_ACQUISITION
            holder_of[(w.ts, w.cpu)] = (rel[j][1], acquisition)
        handoffs[(w.caller, holder)][0] += 1
        handoffs[(w.caller, holder)][1] += w.wait
    return {"handoffs": {k: tuple(v) for k, v in handoffs.items()}, "waits": len(waits), "not_traced": not_traced,
            "holder_of": holder_of}
