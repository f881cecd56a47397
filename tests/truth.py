"""Independent truth for the analysis tests, computed from `trace-cmd report -t` TEXT.

Deliberately shares no code with zlperf: a plain-Python parse of what the reference tool
prints, and textbook computations (sorted lists, nearest rank, per-CPU pairing written as
the obvious loop). If zlperf and this disagree, one of them is wrong.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass, field

_LINE = re.compile(
    r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?:\S+\s+)?(?P<ts>\d+\.\d+):\s+(?P<event>[\w]+):\s*(?P<rest>.*)$"
)
# "[N EVENTS DROPPED]", or "[EVENTS DROPPED]" when the kernel could not count them (older: "[?? EVENTS ...]").
_DROPPED = re.compile(r"CPU:\s*(?P<cpu>\d+)\s+\[(?:(?P<n>\d+|\?+) )?EVENTS DROPPED\]")
_KV = re.compile(r"(\w+)=(\S+)")


@dataclass
class Ev:
    ts: int  # ns
    cpu: int
    pid: int
    comm: str
    event: str
    f: dict


@dataclass
class Truth:
    events: Counter = field(default_factory=Counter)
    stream: list = field(default_factory=list)  # Ev and ("DROP", cpu, n) in report order
    first_ts: int | None = None
    last_ts: int | None = None


def report_text(path) -> str:
    return subprocess.run(["trace-cmd", "report", "-t", str(path)], check=True, capture_output=True,
                          text=True).stdout


def parse(path) -> Truth:
    t = Truth()
    for line in report_text(path).splitlines():
        d = _DROPPED.search(line)
        if d:
            t.stream.append(("DROP", int(d.group("cpu")), d.group("n")))
            continue
        m = _LINE.match(line)
        if not m:
            continue
        sec, frac = m.group("ts").split(".")
        ts = int(sec) * 10**9 + int(frac.ljust(9, "0"))
        ev = m.group("event")
        t.events[ev] += 1
        t.first_ts = ts if t.first_ts is None else min(t.first_ts, ts)
        t.last_ts = ts if t.last_ts is None else max(t.last_ts, ts)
        if ev.startswith("mm_zone_lock"):
            f = dict(_KV.findall(m.group("rest")))
            t.stream.append(Ev(ts, int(m.group("cpu")), int(m.group("pid")), m.group("comm").strip(), ev, f))
    return t


def nearest_rank(sorted_vals: list[int], p: float) -> int:
    k = max(1, math.ceil(p / 100 * len(sorted_vals) - 1e-9))
    return sorted_vals[k - 1]


def stats(vals: list[int]) -> dict:
    if not vals:
        return {"count": 0, "sum": 0, "min": None, "max": None, "p50": None, "p90": None, "p99": None}
    s = sorted(vals)
    return {"count": len(s), "sum": sum(s), "min": s[0], "max": s[-1],
            "p50": nearest_rank(s, 50), "p90": nearest_rank(s, 90), "p99": nearest_rank(s, 99)}


def expected(path) -> dict:
    """The numbers zlperf's JSON must show, by zone and by caller."""
    t = parse(path)
    zones: dict = defaultdict(lambda: {"contended_events": 0, "acquisitions": 0, "contended": 0,
                                        "wait": [], "hold": [], "unmatched_unlocks": 0})
    callers: dict = defaultdict(lambda: {"contended_events": 0, "acquisitions": 0, "contended": 0, "wait": [],
                                          "hold": []})
    all_wait: list = []  # every zone's, for the totals
    all_hold: list = []
    last_on_cpu: dict = {}  # cpu -> the last locked/unlock/DROP seen on it
    unreleased = 0
    for item in t.stream:
        if isinstance(item, tuple):
            last_on_cpu[item[1]] = "DROP"
            continue
        zone = f"{item.f['node']}:{item.f['zone']}"
        caller = item.f.get("caller")
        if item.event == "mm_zone_lock_contended":
            zones[zone]["contended_events"] += 1
            callers[caller]["contended_events"] += 1
        elif item.event == "mm_zone_locked":
            zones[zone]["acquisitions"] += 1
            callers[caller]["acquisitions"] += 1
            if item.f["contended"] == "1":
                zones[zone]["contended"] += 1
                w = int(item.f["wait"])
                zones[zone]["wait"].append(w)
                callers[caller]["wait"].append(w)
                callers[caller]["contended"] += 1
                all_wait.append(w)
            prev = last_on_cpu.get(item.cpu)
            if isinstance(prev, Ev) and prev.event == "mm_zone_locked":
                unreleased += 1
            last_on_cpu[item.cpu] = item
        elif item.event == "mm_zone_lock_unlock":
            prev = last_on_cpu.get(item.cpu)
            if isinstance(prev, Ev) and prev.event == "mm_zone_locked" and \
                    f"{prev.f['node']}:{prev.f['zone']}" == zone:
                hold = item.ts - prev.ts
                zones[zone]["hold"].append(hold)
                all_hold.append(hold)
                callers[prev.f["caller"]]["hold"].append(hold)
            elif prev != "DROP":
                zones[zone]["unmatched_unlocks"] += 1
            last_on_cpu[item.cpu] = item
    has_locked = t.events["mm_zone_locked"] > 0
    has_unlock = t.events["mm_zone_lock_unlock"] > 0
    out_zones = {}
    for z, v in zones.items():
        out_zones[z] = {
            "contended_events": v["contended_events"],
            "acquisitions": v["acquisitions"] if has_locked else None,
            "contended": v["contended"] if has_locked else None,
            "wait_ns": stats(v["wait"]) if has_locked else None,
            "hold_ns": stats(v["hold"]) if has_locked and has_unlock else None,
            "unmatched_unlocks": v["unmatched_unlocks"] if has_locked and has_unlock else None,
        }
    out_callers = {
        c: {"contended_events": v["contended_events"], "acquisitions": v["acquisitions"] if has_locked else None,
            "contended": v["contended"] if has_locked else None,
            "wait_ns": stats(v["wait"]) if has_locked else None,
            "hold_ns": stats(v["hold"]) if has_locked and has_unlock else None}
        for c, v in callers.items() if v["contended_events"] or v["acquisitions"]
    }
    totals = {
        "contended_events": sum(v["contended_events"] for v in zones.values()),
        "acquisitions": sum(v["acquisitions"] for v in zones.values()) if has_locked else None,
        "contended": sum(v["contended"] for v in zones.values()) if has_locked else None,
        "wait_ns": stats(all_wait) if has_locked else None,
        "hold_ns": stats(all_hold) if has_locked and has_unlock else None,
    }
    return {"events": {f"kmem:{k}" if k.startswith("mm_") else k: n for k, n in t.events.items()},
            "duration_ns": (t.last_ts - t.first_ts) if t.first_ts is not None else 0,
            "zones": out_zones, "callers": out_callers, "totals": totals, "unreleased": unreleased}


def budget_metrics(path) -> dict:
    """What `zlperf check` must measure: {"overall": {METRIC: value}, "zones": {label: ...}, "callers": {...}}.

    From the text parse above and tests/holders_truth.py (who held the lock), with the textbook formulas:
    contention_ratio = contended / acquisitions, contended_per_sec = contended events / window seconds,
    not_traced_share = waits behind no traced release / all waits. None: the recording cannot tell."""
    import holders_truth

    e = expected(path)
    secs = e["duration_ns"] / 1e9

    def metrics(g: dict) -> dict:
        acq, cont = g.get("acquisitions"), g.get("contended")
        wait, hold = g.get("wait_ns"), g.get("hold_ns")
        return {
            "contended_events": g["contended_events"],
            "contended_per_sec": g["contended_events"] / secs,
            "contention_ratio": (cont / acq) if acq else None,
            "wait_ns.p99": wait["p99"] if wait else None,
            "wait_ns.max": wait["max"] if wait else None,
            "hold_ns.p99": hold["p99"] if hold else None,
            "hold_ns.max": hold["max"] if hold else None,
        }

    out = {"overall": metrics(e["totals"]), "zones": {z: metrics(g) for z, g in e["zones"].items()},
           "callers": {c: metrics(g) for c, g in e["callers"].items()}}
    holds_recorded = e["totals"]["hold_ns"] is not None
    att = holders_truth.attribute(holders_truth.from_trace_cmd(path)) if holds_recorded else None
    out["overall"]["not_traced_share"] = (att["not_traced"] / att["waits"]) if att and att["waits"] else None
    for caller, m in out["callers"].items():
        if att is None:
            m["not_traced_share"] = None
            continue
        mine = {holder: n for (waiter, holder), (n, _s) in att["handoffs"].items() if waiter == caller}
        total = sum(mine.values())
        m["not_traced_share"] = (mine.get(holders_truth.NOT_TRACED, 0) / total) if total else None
    return out
