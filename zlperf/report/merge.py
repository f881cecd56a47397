"""Many recordings (hosts) as one result: ``zlperf merge``.

Counts, sums, minima, maxima and histograms merge exactly. Percentiles stay exact where the parts are
exact distributions (results analysed in this process) or where one part holds every value of a group;
otherwise they come from the merged log-linear histogram, within 0.79% of the exact value, and the result
says so (documents written before zlperf had that histogram fall back to log2 bucket upper bounds). An
engine that holds every value (``zlperf fleet``) passes its own exact distributions instead.
Durations add up (rates are per recording-second); CPU time adds up too, so "share of the CPUs"
stays a share of the fleet's CPUs. CPUs and tasks keep the host they belong to.
"""

from __future__ import annotations

__all__ = ["merge_results", "merge_stats"]

import math
from typing import Callable, Optional

import numpy as np

from zlperf.analysis.model import Capabilities
from zlperf.analysis.result import (
    AnalysisResult, BatchBucket, CallerKey, Counts, CpuKey, Group, Handoff, HolderCost, Holders, Missed, Source,
    StackCount, Stats, TaskKey, TimelineBins, Window)
from zlperf.analysis.holders import by_holder
from zlperf.analysis.stats import Distribution, stats_from_log2, stats_from_loglinear
from zlperf.errors import ZlperfError
from zlperf.report.document import SCHEMA
from zlperf.report.read import HistogramStats


#: ``pooled(dimension, key, which)``: the distribution of a merged group computed over the pooled values
#: of every part (dimension "total", "zone", "caller", "cpu", "task" or "batch"; ``which`` "wait" or "hold").
Pooled = Callable[[str, object, str], Stats]


class _Merge:
    """State of one merge: which histogram any percentile had to come from, or the pooled distributions."""

    def __init__(self, pooled: Optional[Pooled] = None) -> None:
        self.approximate: Optional[str] = None  # "log-linear" or "log2" once a percentile came from histograms
        self.pooled = pooled

    def stats(self, parts: list[Stats]) -> Stats:
        """One distribution of every value of ``parts``."""
        parts = [p for p in parts if p.count]
        if not parts:
            return Distribution()
        if len(parts) == 1:
            return parts[0]
        if all(isinstance(p, Distribution) for p in parts):
            merged = Distribution()
            for p in parts:
                merged.merge(p)  # type: ignore[arg-type]
            return merged
        summaries: list[dict] = [p.summary() for p in parts]  # type: ignore[misc]
        width = max(len(s["hist_log2"]) for s in summaries)
        log2 = np.zeros(width, dtype=object)
        for s in summaries:
            log2[: len(s["hist_log2"])] += np.array(s["hist_log2"], dtype=object)
        count, total = sum(s["count"] for s in summaries), sum(s["sum"] for s in summaries)
        vmin, vmax = min(s["min"] for s in summaries), max(s["max"] for s in summaries)
        if all(s.get("hist_loglinear") is not None for s in summaries):
            self.approximate = self.approximate or "log-linear"
            buckets: dict[int, int] = {}
            for s in summaries:
                for low, c in s["hist_loglinear"]:
                    buckets[low] = buckets.get(low, 0) + c
            return HistogramStats(stats_from_loglinear(sorted(buckets.items()), count, total, vmin, vmax,
                                                       log2.tolist()))
        self.approximate = "log2"  # a document written before zlperf kept the log-linear histogram
        return HistogramStats(stats_from_log2(log2.tolist(), count, total, vmin, vmax))

    def groups(self, dimension: str, key, parts: list[Group]) -> Group:
        counts = Counts()
        for g in parts:
            counts = counts + g.counts
        if self.pooled is not None:
            wait, hold = self.pooled(dimension, key, "wait"), self.pooled(dimension, key, "hold")
        else:
            wait, hold = self.stats([g.wait for g in parts]), self.stats([g.hold for g in parts])
        return Group(key=key, counts=counts, wait=wait, hold=hold, slices=_sum_slices(parts),
                     hosts=sum(g.hosts for g in parts))


def merge_stats(parts: list[Stats]) -> Stats:
    """One distribution of every value of ``parts`` (exact when every part is exact)."""
    return _Merge().stats(parts)


def _sum_slices(parts: list[Group]) -> Optional[np.ndarray]:
    """Slice i of the merge is slice i of every recording (each a tenth of its own window)."""
    slices = [g.slices for g in parts]
    if any(s is None for s in slices):
        return None
    if len({s.shape for s in slices if s is not None}) != 1:
        return None
    return np.sum([s for s in slices if s is not None], axis=0)


def _join(results: list[AnalysisResult], names: list[str], dimension: str, key_of, m: _Merge) -> list[Group]:
    joined: dict = {}
    for name, r in zip(names, results):
        for g in r.groups(dimension):
            joined.setdefault(key_of(g.key, name), []).append(g)
    return [m.groups(dimension, key, parts) for key, parts in joined.items()]


def _caller_key(k: CallerKey, _name: str) -> CallerKey:
    # Addresses differ between kernels (KASLR, builds): callers join by symbol.
    return CallerKey(symbol=k.symbol, addr=None, role=k.role)


def _timeline(results: list[AnalysisResult]) -> TimelineBins:
    """Each recording's timeline, aligned at its own start, in bins as wide as the widest."""
    columns = results[0].timeline.columns
    width = max((r.timeline.bin_ns for r in results), default=0)
    if width <= 0:
        return TimelineBins(0, 0, columns, np.zeros((0, len(columns))))
    ends = [len(r.timeline.values) * r.timeline.bin_ns for r in results]
    out = np.zeros((max(1, math.ceil(max(ends) / width)), len(columns)))
    heats = [r.timeline.wait_log2 for r in results]
    known = all(h is not None for h in heats)  # the heatmap only when every recording has one
    heat = np.zeros((len(out), max((h.shape[1] for h in heats if h is not None), default=0)), dtype=np.int64)
    for r in results:
        tl = r.timeline
        if not len(tl.values):
            continue
        target = (np.arange(len(tl.values)) * tl.bin_ns) // width
        np.add.at(out, target, tl.values)
        if known and tl.wait_log2 is not None and tl.wait_log2.size:
            np.add.at(heat[:, :tl.wait_log2.shape[1]], target, tl.wait_log2)
    return TimelineBins(0, width, columns, out, wait_log2=heat if known else None)


def _holders(results: list[AnalysisResult], names: list[str]) -> Optional[Holders]:
    """Holders of many recordings: totals and pairs add up; each costly holder keeps its host."""
    parts = [r.holders for r in results]
    if any(h is None for h in parts):
        return None  # some recording cannot tell who held the lock
    pairs: dict[tuple[str, str], list[int]] = {}
    convoys: dict[int, int] = {}
    top = []
    for name, h in zip(names, parts):
        for x in h.handoffs:  # type: ignore[union-attr]
            acc = pairs.setdefault((x.waiter_caller, x.holder_caller), [0, 0])
            acc[0] += x.waits
            acc[1] += x.wait_ns_sum
        for length, n in h.convoys.items():  # type: ignore[union-attr]
            convoys[length] = convoys.get(length, 0) + n
        top += [HolderCost(**{**c.__dict__, "host": c.host or name}) for c in h.top]  # type: ignore[union-attr]
    keep = max(len(h.top) for h in parts)  # type: ignore[union-attr]
    total = {k: sum(getattr(h, k) for h in parts) for k in (
        "waits", "wait_ns_sum", "not_traced", "not_traced_wait_ns_sum", "no_acquisition_seen", "handed_off",
        "uncontended")}
    handoffs = sorted((Handoff(a, b, n, s) for (a, b), (n, s) in pairs.items()),
                      key=lambda x: (-x.wait_ns_sum, -x.waits, x.waiter_caller, x.holder_caller))
    top.sort(key=lambda x: (-x.wait_ns_sum, -x.waits, x.caller, x.host or "", x.pid))
    return Holders(handoffs=handoffs, by_caller=by_holder(handoffs), top=top[:keep],
                   convoys=dict(sorted(convoys.items())), **total)


def _capabilities(results: list[AnalysisResult], names: list[str]) -> Capabilities:
    caps = [r.capabilities for r in results]
    profiles = sorted({c.profile for c in caps})
    wait_is = sorted({c.wait_is for c in caps})
    return Capabilities(
        abi=" + ".join(sorted({c.abi for c in caps})),
        profile=profiles[0] if len(profiles) == 1 else "mixed: " + ", ".join(profiles),
        contended_events=all(c.contended_events for c in caps), acquisitions=all(c.acquisitions for c in caps),
        waits=all(c.waits for c in caps), holds=all(c.holds for c in caps),
        contended_flag=all(c.contended_flag for c in caps),
        cannot=sorted({x for c in caps for x in c.cannot}),
        notes=[f"{n}: {note}" for n, c in zip(names, caps) for note in c.notes],
        wait_is=wait_is[0] if len(wait_is) == 1 else "mixed: " + "; ".join(wait_is))


def merge_results(results: list[AnalysisResult], names: list[str], pooled: Optional[Pooled] = None) -> AnalysisResult:
    """One result for many recordings (hosts), named ``names`` in cpus, tasks and worst cases.

    ``pooled``: the merged groups' distributions, computed by the caller over every part's values (an
    engine reading each host's tables); the parts' own distributions are then not merged.
    """
    if not results:
        raise ZlperfError("merge: give at least one report")
    m = _Merge(pooled)
    duration = sum(r.duration_ns for r in results)
    events: dict[str, int] = {}
    for r in results:
        for k, v in r.events.items():
            events[k] = events.get(k, 0) + v
    missed = Missed(
        events=sum(r.missed.events for r in results), unknown_gaps=sum(r.missed.unknown_gaps for r in results),
        by_cpu={(k if r.merged_from else f"{n}:{k}"): v for n, r in zip(names, results) for k, v in r.missed.by_cpu.items()},
        kernel_overrun=sum(r.missed.kernel_overrun for r in results),
        kernel_dropped_events=sum(r.missed.kernel_dropped_events for r in results))
    zones = sorted(_join(results, names, "zone", lambda k, _n: k, m), key=lambda g: g.key.label)
    callers = _join(results, names, "caller", _caller_key, m)
    callers.sort(key=lambda g: (-g.counts.contended_events, -g.counts.acquisitions, g.key.symbol))
    cpus = _join(results, names, "cpu", lambda k, n: CpuKey(k.cpu, k.host or n), m)
    cpus.sort(key=lambda g: (g.key.host, g.key.cpu))
    tasks = _join(results, names, "task", lambda k, n: TaskKey(k.pid, k.comm, k.host or n), m)
    tasks.sort(key=lambda g: (-g.counts.contended_events, -g.counts.acquisitions, g.key.host, g.key.pid))
    batches: dict[tuple[int, int], list] = {}
    for r in results:
        for b in r.hold_by_batch:
            batches.setdefault((b.low, b.high), []).append(b.hold)
    stacks: dict[tuple, int] = {}
    for r in results:
        for s in r.stacks:
            stacks[s.frames] = stacks.get(s.frames, 0) + s.count

    def worst(attr: str) -> list:
        rows = []
        for n, r in zip(names, results):
            for w in getattr(r, attr):
                rows.append(type(w)(**{**w.__dict__, "host": w.host or n}))
        keep = max((len(getattr(r, attr)) for r in results), default=0)
        return sorted(rows, key=lambda w: -w.value_ns)[:keep]

    merged_from = []
    for n, r in zip(names, results):
        merged_from.extend(r.merged_from or [{"name": n, "path": r.source.path, "profile": r.capabilities.profile,
                                              "duration_ns": r.duration_ns}])
    totals = m.groups("total", None, [r.totals for r in results])
    top_waits, top_holds = worst("top_waits"), worst("top_holds")
    hold_by_batch = [BatchBucket(lo, hi, pooled("batch", (lo, hi), "hold") if pooled else m.stats(parts))
                     for (lo, hi), parts in sorted(batches.items())]
    notes = {
        "duration_note": "sum of the merged recordings' durations (rates are per recording-second)",
        "timeline_note": "each recording's timeline aligned at its own start (time since start, not wall time)",
    }
    if m.approximate == "log-linear":
        notes["percentiles_note"] = ("percentiles of groups seen in several recordings come from the merged "
                                     "log-linear histograms: the middle of the bucket holding the nearest-rank "
                                     "value, within 0.79% of the exact value")
    elif m.approximate == "log2":
        notes["percentiles_note"] = ("percentiles of groups seen in several recordings come from the merged log2 "
                                     "histograms (bucket upper bounds: up to 2x the exact value), because a "
                                     "document lacks the log-linear histogram (written by an older zlperf)")
    clocks = {r.source.clock for r in results}
    return AnalysisResult(
        source=Source(path=f"merge of {len(merged_from)} reports", format=f"merged {SCHEMA}",
                      clock=clocks.pop() if len(clocks) == 1 else None,  # the recordings' clock when they share one
                      cpus=sum(r.source.cpus for r in results), kallsyms=None),
        capabilities=_capabilities(results, names),
        window=Window(0, duration),
        duration_ns=duration,
        cpu_time_ns=sum(r.cpu_time_ns for r in results),
        events=dict(sorted(events.items())),
        missed=missed, totals=totals, zones=zones, callers=callers, cpus=cpus, tasks=tasks,
        hold_by_batch=hold_by_batch, timeline=_timeline(results), top_waits=top_waits, top_holds=top_holds,
        stacks=[StackCount(f, c) for f, c in sorted(stacks.items(), key=lambda kv: -kv[1])],
        warnings=[f"{n}: {w}" for n, r in zip(names, results) for w in r.warnings],
        merged_from=merged_from, merge_notes=notes, holders=_holders(results, names))
