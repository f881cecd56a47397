"""A fleet report: the :class:`AnalysisResult` of many hosts' Parquet tables, every number from the engine.

Per host, the engine returns what ``zlperf report`` would have counted (groups' counters, timeline, slices,
worst cases, holders, stacks); those merge exactly as ``zlperf merge`` merges hosts. Distributions are not
merged: the engine computes them over the pooled values of all hosts (exact nearest-rank percentiles). A
fleet of one host is that host's report.
"""

from __future__ import annotations

__all__ = ["fleet_result"]

import dataclasses
from pathlib import Path
from typing import Any, Optional

import numpy as np

from zlperf.analysis.core import TIMELINE_BINS
from zlperf.analysis.holders import NOT_TRACED, by_holder
from zlperf.analysis.model import Capabilities
from zlperf.analysis.result import (
    NO_STACK, SLICES, AnalysisResult, BatchBucket, CallerKey, Counts, CpuKey, Group, Handoff, HolderCost, HolderOf,
    Holders, HostSummary, Missed, Source, StackCount, Stats, TaskKey, TimelineBins, WorstCase, Window, ZoneKey)
from zlperf.analysis.stats import Distribution
from zlperf.analysis.timeline import COLUMNS as TIMELINE_COLUMNS
from zlperf.analysis.timeline import MAX_SERIES, final_bin_ns, rebin_factor
from zlperf.export.schema import EVENT_TABLES, SCHEMA_VERSION
from zlperf.fleet import sql
from zlperf.fleet.stats import StatsKey, read_stats
from zlperf.fleet.tables import HostTables
from zlperf.report.merge import merge_results

_EMPTY = Distribution()
_WORST = ("which", "v", "host", "ts_ns", "cpu", "pid", "comm", "zone", "node", "zone_name", "lock_addr", "zone_ptr",
          "caller", "caller_addr", "batch", "seq", "holder_caller", "holder_pid", "holder_comm", "holder_cpu",
          "holder_release_ts_ns", "holder_hold_ns", "holder_batch", "holder_waited", "rn")


def _hex(v: Optional[int]) -> Optional[str]:
    return None if v is None else f"{v:#x}"


def _int(v: Optional[str]) -> Optional[int]:
    return None if v is None else int(v, 16)


class _Answers:
    """Every query's rows, by host where they are per host."""

    def __init__(self, engine: Any, hosts: list[HostTables], top: int):
        d = engine.dialect
        for table in EVENT_TABLES:
            engine.register_files(table, [str(h.files[table]) for h in hosts])
        self.counters, extent = _roll_up(engine.rows(sql.counters()))
        self.params = {h.host: _params(h.run, extent.get(h.host)) for h in hosts}
        engine.register_rows("params", [(c, "string" if c == "host" else "bigint") for c in _PARAMS],
                             [(host, *(p[c] for c in _PARAMS[1:])) for host, p in self.params.items()])
        one = len(hosts) == 1
        stats, hists = [], []
        for dim in sql.DIMENSIONS:  # "host" last: the worst cases are read from its values
            engine.materialize("vc", sql.values(dim, one))
            stats += engine.rows(sql.stats(d, dim, one))
            hists += engine.rows(sql.histograms(d, dim, one))
        self.stats = read_stats(stats, hists)
        self.worst = _by_host([dict(zip(_WORST, r)) for r in engine.rows(sql.worst(d, top))], "host")
        engine.materialize("vc", "SELECT 1 AS done")  # free the last values
        self.timeline = _by_host(engine.rows(sql.timeline(d)), 0)
        self.slices = _by_host(engine.rows(sql.slices(d)), 1)
        self.holder_totals = _by_host(engine.rows(sql.holder_totals()), 0)
        self.handoffs = _by_host(engine.rows(sql.handoffs()), 0)
        self.top_holders = _by_host(engine.rows(sql.top_holders(top)), 0)
        self.convoys = _by_host(engine.rows(sql.convoys()), 0)
        self.stacks = _by_host(engine.rows(sql.stacks()), 0)

    def stat(self, key: StatsKey) -> Stats:
        return self.stats.get(key, _EMPTY)


_PARAMS = ("host", "lo", "bin_ns", "lo_bin", "factor", "span", "bins")
_C = {name: i for i, name in enumerate(sql.COUNTED)}


def _roll_up(rows: list[tuple]) -> tuple[dict, dict]:
    """The counters of every group of every host, summed from the finest rows; and each host's timeline
    extent (first and last timestamp of the rows it counts). Groups: host -> dimension -> key -> [contended
    events, acquisitions, contended, unmatched, unreleased, broken, holds with a batch size]."""
    groups: dict[str, dict[str, dict[tuple, list[int]]]] = {}
    extent: dict[str, tuple[int, int]] = {}
    n = len(sql.COUNTED)
    for r in rows:
        host = r[_C["host"]]
        counts = [int(x) for x in r[n:n + 7]]
        keys = {
            "total": (host,),
            "zone": (host, *r[_C["zone"]:_C["zone_ptr"] + 1]),
            "caller": (host, r[_C["caller"]], r[_C["caller_addr"]]),
            "cpu": (host, r[_C["cpu"]]),
            "task": (host, r[_C["pid"]], r[_C["comm"]]),
        }
        if counts[6]:
            keys["batch"] = (host, r[_C["bucket"]])
        mine = groups.setdefault(host, {})
        for dim, key in keys.items():
            acc = mine.setdefault(dim, {}).setdefault(key, [0] * 7)
            for i, c in enumerate(counts):
                acc[i] += c
        if r[n + 7] is not None:
            lo, hi = extent.get(host, (r[n + 7], r[n + 8]))
            extent[host] = (min(lo, int(r[n + 7])), max(hi, int(r[n + 8])))
    return groups, extent


def _params(run: dict, extent: Optional[tuple[int, int]]) -> dict[str, int]:
    """The host's timeline geometry as the analysis had it: the fine width its timeline ended with (from
    the extremes of the rows it binned), the window, and the round factor of the report's bins."""
    lo, hi = run["first_ts_ns"], run["last_ts_ns"]
    width = final_bin_ns(*extent, run["timeline_bin_ns"]) if extent else run["timeline_bin_ns"]
    lo_bin, hi_bin = lo // width, hi // width
    factor = rebin_factor(hi_bin - lo_bin + 1, TIMELINE_BINS)
    return {"lo": lo, "bin_ns": width, "lo_bin": lo_bin, "factor": factor, "span": max(1, hi - lo),
            "bins": -(-(hi_bin - lo_bin + 1) // factor)}


def _by_host(rows: list, at: Any) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in rows:
        out.setdefault(r[at], []).append(r)
    return out


def _caps(run: dict) -> Capabilities:
    return Capabilities(abi=run["abi"], profile=run["profile"], contended_events=run["can_contended_events"],
                        acquisitions=run["can_acquisitions"], waits=run["can_waits"], holds=run["can_holds"],
                        contended_flag=run["contended_flag"], cannot=list(run["cannot_show"]),
                        notes=list(run["notes"]), wait_is=run["wait_is"])


class _Host:
    """One host's result from the answers (its distributions pooled ones when the fleet is that host)."""

    def __init__(self, h: HostTables, a: _Answers, one_host: bool):
        self.h, self.a, self.run, self.one = h, a, h.run, one_host
        self.caps = _caps(self.run)
        self.groups = a.counters.get(h.host, {})  # dimension -> (host, its own keys...) -> counters

    def stats(self, dim: str, keys: tuple, which: str) -> Stats:
        return self.a.stat((dim, keys, which)) if self.one else _EMPTY

    def group(self, dim: str, keys: tuple, key: Any, stat_keys: tuple, slices: Optional[np.ndarray] = None) -> Group:
        ce, acq, cont, um, ur, br, _ = self.groups[dim][keys]
        return Group(key=key, counts=Counts(ce, acq, cont, um, ur, br), wait=self.stats(dim, stat_keys, "wait"),
                     hold=self.stats(dim, stat_keys, "hold"), slices=slices)

    def result(self) -> AnalysisResult:
        run, host = self.run, self.h.host
        slices = self._slices()
        zones = []
        for keys in self.groups.get("zone", {}):
            label, node, name, lock, ptr = keys[1:]
            zones.append(self.group("zone", keys, ZoneKey(label, node, name, _int(lock), _int(ptr)), keys[1:],
                                    slices.get(("zone", keys[1:]), _zero_slices(slices))))
        zones.sort(key=lambda g: g.key.label)
        callers = []
        for keys in self.groups.get("caller", {}):
            ce, acq = self.groups["caller"][keys][:2]
            symbol, addr = keys[1:]
            key = CallerKey(symbol, _int(addr), "lock" if ce or acq else "unlock")
            callers.append(self.group("caller", keys, key, keys[1:],
                                      slices.get(("caller", keys[1:]), _zero_slices(slices))))
        callers.sort(key=lambda g: (-g.counts.contended_events, -g.counts.acquisitions, g.key.symbol))
        cpus = sorted((self.group("cpu", k, CpuKey(k[1]), k) for k in self.groups.get("cpu", {})),
                      key=lambda g: g.key.cpu)
        tasks = sorted((self.group("task", k, TaskKey(k[1], k[2]), k) for k in self.groups.get("task", {})),
                       key=lambda g: (-g.counts.contended_events, -g.counts.acquisitions, g.key.pid))
        totals = self.group("total", (host,), None, ()) if "total" in self.groups else Group(
            None, Counts(), self.stats("total", (), "wait"), self.stats("total", (), "hold"))
        batches = []
        if self.caps.holds:
            for keys in sorted(self.groups.get("batch", {}), key=lambda k: k[1]):
                bucket = keys[1]
                low, high = (0, 0) if bucket == 0 else (1 << (bucket - 1), (1 << bucket) - 1)
                batches.append(BatchBucket(low, high, self.stats("batch", (bucket,), "hold")))
        return AnalysisResult(
            source=Source(path=run["recording"], format=run["format"], clock=run["clock"], cpus=run["cpus"],
                          kallsyms=run["kallsyms"]),
            capabilities=self.caps, window=Window(run["first_ts_ns"], run["last_ts_ns"]),
            duration_ns=run["duration_ns"], cpu_time_ns=run["cpu_time_ns"],
            events=dict(sorted((e["name"], e["count"]) for e in run["events"])),
            missed=Missed(events=run["missed_events"], unknown_gaps=run["missed_unknown_gaps"],
                          by_cpu={e["name"]: e["count"] for e in run["missed_by_cpu"]},
                          kernel_overrun=run["kernel_overrun"], kernel_dropped_events=run["kernel_dropped_events"]),
            totals=totals, zones=zones, callers=callers, cpus=cpus, tasks=tasks, hold_by_batch=batches,
            timeline=self._timeline(), top_waits=self._worst("wait") if self.caps.waits else [],
            top_holds=self._worst("hold") if self.caps.holds else [], stacks=self._stacks(totals),
            warnings=list(run["warnings"]), holders=self._holders() if run["can_holders"] else None)

    def _timeline(self) -> TimelineBins:
        p = self.a.params[self.h.host]
        values = np.zeros((p["bins"], len(TIMELINE_COLUMNS)))
        rows = self.a.timeline.get(self.h.host, [])
        buckets = [int(r[2]) for r in rows if r[2] is not None]
        heat = np.zeros((p["bins"], max(buckets) + 1 if buckets else 0), dtype=np.int64)
        for r in rows:
            if r[2] is None:
                values[int(r[1])] = [float(x) for x in r[3:]]
            else:  # the latency heatmap: waits per bin and log2 bucket
                heat[int(r[1]), int(r[2])] = int(r[3])
        return TimelineBins(p["lo_bin"] * p["bin_ns"], p["bin_ns"] * p["factor"], TIMELINE_COLUMNS, values,
                            wait_log2=heat)

    def _slices(self) -> dict:
        """(dim, key) -> (SLICES, 6) counters; {None: None} when the analysis could not track them all."""
        out: dict = {}
        for r in self.a.slices.get(self.h.host, []):
            dim = r[0]
            key = tuple(r[2:7]) if dim == "zone" else tuple(r[7:9])
            arr = out.setdefault((dim, key), np.zeros((SLICES, len(TIMELINE_COLUMNS))))
            arr[int(r[9])] = [float(x) for x in r[10:]]
        if len(out) > MAX_SERIES:  # the analysis kept only the first MAX_SERIES zones and callers it met
            return {None: None}
        return out

    def _worst(self, which: str) -> list[WorstCase]:
        rows = [r for r in self.a.worst.get(self.h.host, []) if r["which"] == which]
        out = []
        for r in rows:
            holder = None
            if which == "wait" and self.run["can_holders"] and r["holder_caller"] is not None:
                traced = r["holder_caller"] != NOT_TRACED
                holder = HolderOf(caller=r["holder_caller"], pid=r["holder_pid"], comm=r["holder_comm"],
                                  cpu=r["holder_cpu"], release_ts_ns=r["holder_release_ts_ns"],
                                  hold_ns=r["holder_hold_ns"], count=r["holder_batch"],
                                  waited=bool(r["holder_waited"]) if traced else False)
            out.append(WorstCase(value_ns=int(r["v"]), ts_ns=int(r["ts_ns"]), cpu=r["cpu"], pid=r["pid"],
                                 comm=r["comm"], zone=r["zone"], caller=r["caller"], count=r["batch"], holder=holder))
        return out

    def _stacks(self, totals: Group) -> list[StackCount]:
        counts = sorted(((int(r[1]), int(r[2])) for r in self.a.stacks.get(self.h.host, [])))
        if not counts:
            return []
        out = [StackCount(self.h.stacks[sid], n) for sid, n in counts]
        out.sort(key=lambda s: -s.count)
        without = totals.counts.contended_events - sum(s.count for s in out)
        if without > 0:
            out.append(StackCount((NO_STACK,), without))
            out.sort(key=lambda s: -s.count)
        return out

    def _holders(self) -> Holders:
        host, series = self.h.host, not self.run["contended_flag"]
        t = (self.a.holder_totals.get(host) or [(host, 0, 0, 0, 0, 0, 0)])[0]
        n, total, nt, nt_sum, na, handed = (int(x or 0) for x in t[1:])
        pairs = [Handoff(r[1], r[2], int(r[3]), int(r[4])) for r in self.a.handoffs.get(host, [])
                 if not (series and r[2] == NOT_TRACED)]
        pairs.sort(key=lambda x: (-x.wait_ns_sum, -x.waits, x.waiter_caller, x.holder_caller))
        top = [HolderCost(r[1], int(r[2]), r[4], int(r[3]), int(r[5]), int(r[6])) for r in self.a.top_holders.get(host, [])]
        top.sort(key=lambda x: (-x.wait_ns_sum, -x.waits, x.caller, x.pid))
        convoys: dict[int, int] = {}
        for r in self.a.convoys.get(host, []):
            if not (series and r[2]):
                convoys[int(r[1])] = convoys.get(int(r[1]), 0) + int(r[3])
        uncontended = 0
        if series:  # zone_lock:* waits with no holder were not contended: left out (zlperf.analysis.holders)
            uncontended, n, total, nt, nt_sum = nt, n - nt, total - nt_sum, 0, 0
        return Holders(waits=n, wait_ns_sum=total, not_traced=nt, not_traced_wait_ns_sum=nt_sum,
                       no_acquisition_seen=na, handed_off=handed, uncontended=uncontended, handoffs=pairs,
                       by_caller=by_holder(pairs), top=top, convoys=dict(sorted(convoys.items())))

    def summary(self, stat: Any) -> HostSummary:
        run, caps = self.run, self.caps
        ce, acq, cont = (self.groups.get("total", {}).get((self.h.host,)) or (0, 0, 0))[:3]
        return HostSummary(
            host=self.h.host, kernel=run["kernel_release"], recording=Path(run["recording"]).name,
            profile=run["profile"], duration_ns=run["duration_ns"], cpus=run["cpus"],
            contended_events=ce if caps.contended_events else None, acquisitions=acq if caps.acquisitions else None,
            contended=cont if caps.acquisitions and caps.contended_flag else None,
            wait=stat(("host", (self.h.host,), "wait")) if caps.waits else None,
            hold=stat(("host", (self.h.host,), "hold")) if caps.holds else None)


def _zero_slices(slices: dict) -> Optional[np.ndarray]:
    return None if None in slices else np.zeros((SLICES, len(TIMELINE_COLUMNS)))


def fleet_result(hosts: list[HostTables], engine: Any, top: int = 10) -> AnalysisResult:
    """The report of ``hosts`` (their Parquet folders, checked), every number computed by ``engine``."""
    answers = _Answers(engine, hosts, top)
    parts = [_Host(h, answers, len(hosts) == 1) for h in hosts]
    summaries = sorted((p.summary(answers.stat) for p in parts),
                       key=lambda s: (-(s.contended_events or 0), -(s.wait.total if s.wait else 0), s.host))
    results = [p.result() for p in parts]
    if len(hosts) == 1:
        return dataclasses.replace(results[0], hosts=summaries)
    names = [h.host for h in hosts]
    merged = merge_results(results, names, pooled=lambda dim, key, which: answers.stat(_pooled_key(dim, key, which)))
    notes = dict(merged.merge_notes)
    notes["percentiles_note"] = (f"exact: nearest-rank percentiles computed by {engine.name} over the pooled "
                                 f"values of all {len(hosts)} hosts (not from histograms)")
    source = Source(path=f"fleet of {len(hosts)} hosts", format=f"{SCHEMA_VERSION} tables via {engine.name}",
                    clock=merged.source.clock, cpus=merged.source.cpus, kallsyms=None)
    return dataclasses.replace(merged, source=source, merge_notes=notes, hosts=summaries)


def _pooled_key(dim: str, key: Any, which: str) -> StatsKey:
    """The engine's key of a merged group (see zlperf.report.merge: callers by symbol, CPUs and tasks per host)."""
    if dim == "total":
        return ("total", (), which)
    if dim == "zone":
        return ("zone", (key.label, key.node, key.name, _hex(key.lock_addr), _hex(key.zone_ptr)), which)
    if dim == "caller":
        return ("caller", (key.symbol, None), which) if key.role == "lock" else ("none", (), which)
    if dim == "cpu":
        return ("cpu", (key.host, key.cpu), which)
    if dim == "task":
        return ("task", (key.host, key.pid, key.comm), which)
    low = key[0]
    return ("batch", (0 if low == 0 else low.bit_length(),), which)
