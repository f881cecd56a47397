"""The analysis core: a reader's chunks in, one :class:`~zlperf.analysis.result.AnalysisResult` out.

Every front end (``zlperf report``, the perf script, the trace-cmd plugins) calls :func:`analyze`
or feeds an :class:`Analyzer` itself; none computes anything on its own. Each ABI adapter
(:mod:`zlperf.analysis.abi`) normalises chunks into observations, an :class:`Aggregate` per ABI
accumulates them, and :meth:`Analyzer.result` turns the chosen one into the public result.
"""

from __future__ import annotations

__all__ = ["Analyzer", "analyze", "window", "Observer", "caller_symbolizer"]

from typing import Callable, Optional, cast

import numpy as np

from zlperf.analysis.abi import AbiAdapter, concerns, make_adapters
from zlperf.analysis.aggregate import Aggregate, GroupStats, TopN
from zlperf.analysis.holders import Attributed, holder_of, summarize
from zlperf.analysis.model import Capabilities, Observations, Table, ZoneTable, has_rows
from zlperf.analysis.options import ABIS, AnalysisOptions
from zlperf.analysis.result import (
    NO_STACK, SLICES, AnalysisResult, BatchBucket, CallerKey, Counts, CpuKey, Group, Missed, Source,
    StackCount, TaskKey, TimelineBins, WorstCase, Window, ZoneKey)
from zlperf.analysis.timeline import COLUMNS as TIMELINE_COLUMNS
from zlperf.errors import ZlperfError
from zlperf.events import MISSED_EVENTS, Chunk, TraceInfo, TraceReader

#: Bins of the report's timeline (it picks a round width that gives about this many).
TIMELINE_BINS = 40

#: ``observer(abi, observations)``: sees every lane's windowed observations as the analyzer accounts them
#: (``abi`` one of :data:`~zlperf.analysis.options.ABIS`), so an exporter writes each row in the same pass.
Observer = Callable[[str, Observations], None]
#: What a caller address prints as when the ABI found none (callers that come from stacks only).
NO_CALLER = "(unknown: no stack recorded)"


def caller_symbolizer(info: TraceInfo) -> Callable[[int], str]:
    """How the report names a caller address of this recording: ``func+0xoff``, hex without symbols."""
    symbols = info.symbols if info.symbols is not None and len(info.symbols) else None

    def sym(addr: int) -> str:
        if addr == 0:
            return NO_CALLER
        return symbols.symbolize(addr) if symbols is not None else f"{addr:#x}"

    return sym


def window(obs: Observations, options: AnalysisOptions, zones: ZoneTable) -> Observations:
    """``obs`` restricted to the options' time window and zone (releases stay whole: a wait in the
    window may be behind a holder that released before it)."""
    zone_code = None
    if options.zone is not None:
        zone_code = zones.find(options.zone)
        if zone_code is None:
            zone_code = -2  # not seen (yet): filters everything of this chunk out
    if options.since_ns is None and options.until_ns is None and zone_code is None:
        return obs

    def keep(t: Optional[Table]) -> Optional[Table]:
        if not has_rows(t):
            return t
        m = np.ones(len(t["ts"]), dtype=bool)
        if options.since_ns is not None:
            m &= t["ts"] >= np.uint64(options.since_ns)
        if options.until_ns is not None:
            m &= t["ts"] <= np.uint64(options.until_ns)
        if zone_code is not None:
            m &= t["zone"] == zone_code
        return t if m.all() else {k: v[m] for k, v in t.items()}

    out = Observations(**{k: getattr(obs, k) if k == "releases" else keep(getattr(obs, k))  # type: ignore[arg-type]
                          for k in obs.TABLES})  # every field named is a table
    if out.acquired is obs.acquired and out.holds is obs.holds:  # nothing cut from them: the hint holds
        out.holds_from_acquired = obs.holds_from_acquired
    return out


class Analyzer:
    """Streaming aggregation of one recording. Feed chunks, then :meth:`result`."""

    def __init__(self, info: TraceInfo, options: Optional[AnalysisOptions] = None,
                 observer: Optional[Observer] = None):
        self.info = info
        self.observer = observer
        self.options = options or AnalysisOptions()
        if self.options.top < 0:
            raise ZlperfError(f"top {self.options.top}: give 0 or more worst cases")
        self.zones = ZoneTable()
        # One lane per event ABI, in order of preference: the patch's kmem events (waits and holds
        # with zone names), the rival zone_lock:* series (waits and holds by zone pointer),
        # lock:contention_* (contended waits only, zones found by stacks). A file's stored formats
        # do not tell which were recorded (`trace-cmd extract` saves every format), so each lane
        # watches for its own events; the report comes from the first lane that saw any.
        self.lanes: list[tuple[AbiAdapter, Aggregate]] = [
            (adapter, Aggregate(self.options)) for adapter in make_adapters(self.zones, info, self.options)]
        self._chosen: Optional[tuple[AbiAdapter, Aggregate, bool]] = None  # (adapter, aggregate, its events seen)
        self._result: Optional[AnalysisResult] = None
        #: after :meth:`result`: every wait of the window with its holder (hold-time recordings), for
        #: exporters that draw or store each hand-off; None when the recording cannot tell
        self.attributed: Optional[Attributed] = None
        self.comms: dict[int, str] = dict(info.cmdlines)  #: pid -> comm, updated from each chunk
        self.event_counts: dict[str, int] = {}
        self.missed_events = 0
        self.missed_unknown_gaps = 0
        self.missed_by_cpu: dict[int, int] = {}
        self.first_ts: Optional[int] = None
        self.last_ts: Optional[int] = None

    # -- feeding ----------------------------------------------------------------------------
    def feed(self, chunk: Chunk) -> None:
        """Account one chunk from the reader."""
        if self._chosen is not None:
            raise RuntimeError("Analyzer.feed() after result(): the stream is closed")
        self.comms.update(chunk.comms)
        for name, batch in chunk.batches.items():
            n = len(batch)
            if not n:
                continue
            if name == MISSED_EVENTS:
                self._count_missed(batch)
                continue
            self.event_counts[name] = self.event_counts.get(name, 0) + n
            lo, hi = int(batch.ts.min()), int(batch.ts.max())
            self.first_ts = lo if self.first_ts is None else min(self.first_ts, lo)
            self.last_ts = hi if self.last_ts is None else max(self.last_ts, hi)
        for adapter, agg in self.lanes:
            if concerns(adapter, chunk):
                agg.account(self._observed(adapter, adapter.observe(chunk)))

    def _count_missed(self, batch) -> None:
        counts = batch.fields["count"].astype(np.int64)
        known = counts >= 0
        self.missed_events += int(counts[known].sum())
        self.missed_unknown_gaps += int((~known).sum())
        for cpu, c in zip(batch.cpu.tolist(), counts.tolist()):
            self.missed_by_cpu[cpu] = self.missed_by_cpu.get(cpu, 0) + max(c, 0)

    def _window(self, obs: Observations) -> Observations:
        return window(obs, self.options, self.zones)

    def _observed(self, adapter: AbiAdapter, obs: Observations) -> Observations:
        obs = self._window(obs)
        if self.observer is not None:
            self.observer(adapter.key, obs)
        return obs

    @property
    def abi(self) -> Optional[str]:
        """After :meth:`result`: the ABI the report comes from (one of ABIS); None before."""
        return self._chosen[0].key if self._chosen is not None else None

    # -- result ------------------------------------------------------------------------------
    def _lane(self, event_counts: dict[str, int]) -> tuple[AbiAdapter, Aggregate, bool]:
        """The lane the report comes from: the --abi one, else the first whose events are in ``event_counts``
        (the stream goes on: nothing is finished here)."""
        lanes = self.lanes
        if self.options.abi != "auto":
            lanes = [self.lanes[ABIS.index(self.options.abi)]]
        seen = [(a, g) for a, g in lanes if any(event_counts.get(e) for e in a.events)]
        adapter, agg = seen[0] if seen else lanes[0]  # none: the first says what is missing
        return adapter, agg, bool(seen)

    def lane(self) -> tuple[AbiAdapter, Aggregate, bool]:
        """(adapter, aggregate, whether its events were seen) of the lane the report would come from now."""
        return self._lane(self.event_counts)

    def finish_lane(self, adapter: AbiAdapter, agg: Aggregate) -> None:
        """End ``adapter``'s stream into ``agg``: what it still holds (unreleased acquisitions) is accounted."""
        agg.account(self._observed(adapter, adapter.finish()))

    def _choose(self) -> tuple[AbiAdapter, Aggregate, bool]:
        """Finish the stream of the ABI the report comes from (unreleased acquisitions at the end)."""
        if self._chosen is None:
            adapter, agg, found = self._lane(self.event_counts)
            self.finish_lane(adapter, agg)
            self._chosen = (adapter, agg, found)
        return self._chosen

    def result(self) -> AnalysisResult:
        """Close the stream and build the result (once; later calls return the same object)."""
        if self._result is None:
            adapter, agg, found = self._choose()
            self._result = ResultBuilder(self, adapter, agg, found).build()
        return self._result


def analyze(reader: TraceReader, options: Optional[AnalysisOptions] = None) -> AnalysisResult:
    """Read every chunk of ``reader`` and return the analysis result.

    A reader that splits its CPUs into parts (one per core it may use: the fast trace.dat reader, on large
    files) is analysed part by part in as many processes (:mod:`zlperf.analysis.parallel`); the result is
    the same as one pass.
    """
    analyzer = None
    split = getattr(reader, "split", None)
    parts = split() if split is not None else []
    if len(parts) > 1:
        from zlperf.analysis.parallel import analyze_parts

        analyzer = analyze_parts(reader, options, parts)  # type: ignore[arg-type]
    if analyzer is None:
        analyzer = Analyzer(reader.info, options)
        for chunk in reader.chunks():
            analyzer.feed(chunk)
    result = analyzer.result()  # zones of stock recordings are only known once the stream is finished
    if options and options.zone and analyzer.zones.find(options.zone) is None:
        known = ", ".join(z.label for z in analyzer.zones.zones) or "none"
        raise ZlperfError(f"{reader.info.path}: zone {options.zone!r} not in this recording (zones: {known})")
    return result


class ResultBuilder:
    """Reads one Aggregate (and the analyzer's stream counters) into an AnalysisResult: the finished one of a
    recording, or one interval's of a live stream (:mod:`zlperf.analysis.live`)."""

    def __init__(self, an: Analyzer, adapter: AbiAdapter, agg: Aggregate, found: bool):
        self.an, self.agg = an, agg
        self.caps = adapter.capabilities(an.event_counts)
        if not found:
            self.caps = Capabilities(
                abi="none: no kmem:mm_zone_lock_*, zone_lock:* or lock:contention_* events in this recording",
                profile="none",
                cannot=["anything about zone->lock: record with `zlperf record --profile minimal` (patched "
                        "kernels) or `--profile stock` (any kernel since 5.19)"])
        opts = an.options
        first = an.first_ts if an.first_ts is not None else 0
        last = an.last_ts if an.last_ts is not None else first
        self.lo = max(first, opts.since_ns) if opts.since_ns is not None else first
        self.hi = min(last, opts.until_ns) if opts.until_ns is not None else last
        self.duration = max(0, self.hi - self.lo)
        self.sym = caller_symbolizer(an.info)  # ``func+0xoff`` of a caller address (hex without symbols)

    def comm(self, pid: int) -> str:
        return self.an.comms.get(pid, "<...>")

    def group(self, key, g: GroupStats, slices: Optional[np.ndarray] = None) -> Group:
        counts = Counts(g.contended_events, g.acquisitions, g.contended, g.unmatched_unlocks, g.unreleased,
                        g.broken_by_missed)
        return Group(key=key, counts=counts, wait=g.wait, hold=g.hold, slices=slices)

    def slices(self, dim: str, key) -> Optional[np.ndarray]:
        return self.agg.timeline.slices((dim, key), self.lo, self.hi, SLICES)

    def build(self) -> AnalysisResult:
        an, agg, info = self.an, self.agg, self.an.info
        zones = []
        for code, g in agg.dims["zone"].items():
            z = an.zones.zones[code]
            key = ZoneKey(label=z.label, node=z.node, name=z.name, lock_addr=z.lock_addr, zone_ptr=z.zone_ptr)
            zones.append(self.group(key, g, self.slices("zone", code)))
        zones.sort(key=lambda grp: grp.key.label)
        callers = []
        for addr, g in agg.dims["caller"].items():
            role = "lock" if (g.contended_events or g.acquisitions or g.wait.count or g.hold.count) else "unlock"
            callers.append(self.group(CallerKey(self.sym(addr), addr, role), g, self.slices("caller", addr)))
        callers.sort(key=lambda grp: (-grp.counts.contended_events, -grp.counts.acquisitions, grp.key.symbol))
        cpus = [self.group(CpuKey(cpu), g) for cpu, g in sorted(agg.dims["cpu"].items())]
        tasks = [self.group(TaskKey(pid, self.comm(pid)), g) for pid, g in agg.dims["task"].items()]
        tasks.sort(key=lambda grp: (-grp.counts.contended_events, -grp.counts.acquisitions, grp.key.pid))
        totals = self.group(None, agg.dims["zone"].total())
        warnings = list(info.warnings)
        warnings += self.sanity(zones, totals)
        if agg.timeline.untracked:
            warnings.append(f"{len(agg.timeline.untracked)} zones/callers beyond the first "
                            f"{agg.timeline.max_series} have no time slices (no noise estimate for zlperf diff)")
        symbols = info.symbols
        attributed = an.attributed = agg.holders.finish() if self.caps.holds else None
        top_waits = self.worst(agg.top_waits, "wait_ns") if self.caps.waits else []
        if attributed is not None:
            for w, h in zip(top_waits, holder_of(attributed, [r["seq"] for r in agg.top_waits.sorted_rows("wait_ns")],
                                                 self.sym, self.comm)):
                w.holder = h
        return AnalysisResult(
            source=Source(path=info.path, format=info.format, clock=info.clock, cpus=info.cpus,
                          kallsyms=getattr(symbols, "source", None) if symbols is not None else None),
            capabilities=self.caps,
            window=Window(self.lo, self.hi, an.options.since_ns, an.options.until_ns, an.options.zone),
            duration_ns=int(self.duration),
            cpu_time_ns=int(self.duration) * max(info.cpus, 0),
            events=dict(sorted(an.event_counts.items())),
            missed=Missed(
                events=an.missed_events, unknown_gaps=an.missed_unknown_gaps,
                by_cpu={str(k): v for k, v in sorted(an.missed_by_cpu.items())},
                kernel_overrun=sum((s.overrun or 0) for s in info.cpu_stats.values()),
                kernel_dropped_events=sum((s.dropped_events or 0) for s in info.cpu_stats.values())),
            totals=totals, zones=zones, callers=callers, cpus=cpus, tasks=tasks,
            hold_by_batch=self.hold_by_batch(),
            timeline=self.timeline(),
            top_waits=top_waits,
            top_holds=self.worst(agg.top_holds, "hold_ns") if self.caps.holds else [],
            stacks=self.stacks(totals.counts.contended_events),
            warnings=warnings,
            holders=(summarize(attributed, self.sym, self.comm, an.options.top, self.caps.contended_flag)
                     if attributed is not None else None),
        )

    def hold_by_batch(self) -> list[BatchBucket]:
        if not self.caps.holds:
            return []
        out = []
        for bucket, hold in enumerate(self.agg.hold_by_batch.groups):
            if not hold.count:  # a bucket no batch size fell in
                continue
            low = 0 if bucket == 0 else 1 << (bucket - 1)
            high = 0 if bucket == 0 else (1 << bucket) - 1
            out.append(BatchBucket(low, high, hold))
        return out

    def timeline(self) -> TimelineBins:
        tl = self.agg.timeline
        start, width, sums = tl.rebinned(("all", 0), self.lo, self.hi, TIMELINE_BINS)
        buckets = sorted(key[1] for key in cast("dict[tuple, np.ndarray]", tl.series) if key[0] == "wait_log2")
        heat = np.zeros((len(sums), buckets[-1] + 1 if buckets else 0), dtype=np.int64)
        for b in buckets:  # the same round bins as the counters: same axis, same window
            heat[:, b] = tl.rebinned(("wait_log2", b), self.lo, self.hi, TIMELINE_BINS)[2][:, 2].astype(np.int64)
        return TimelineBins(start_ns=start, bin_ns=width, columns=TIMELINE_COLUMNS, values=sums, wait_log2=heat)

    def worst(self, top: TopN, col: str) -> list[WorstCase]:
        rows = []
        for r in top.sorted_rows(col):
            z = self.an.zones.zones[r["zone"]] if r["zone"] >= 0 else None
            rows.append(WorstCase(value_ns=r[col], ts_ns=r["ts"], cpu=r["cpu"], pid=r["pid"], comm=self.comm(r["pid"]),
                                  zone=z.label if z else None, caller=self.sym(r["caller"]), count=r.get("count")))
        return rows

    def stacks(self, contended: int) -> list[StackCount]:
        """Distinct stacks, most common first; contended events without a stack are one more entry,
        so the counts always add up to the contended events (when any stack was recorded)."""
        if not self.agg.stacks:
            return []
        out = [StackCount(tuple(self.sym(int(a)) for a in frames), count)
               for frames, count in sorted(self.agg.stacks.values(), key=lambda e: -e[1])]
        without = contended - sum(s.count for s in out)
        if without > 0:
            out.append(StackCount((NO_STACK,), without))
            out.sort(key=lambda s: -s.count)
        return out

    def sanity(self, zones: list[Group], totals: Group) -> list[str]:
        """Impossible numbers mean damaged timestamps: say so rather than print them as facts."""
        out: list[str] = []
        if not self.duration:
            return out
        for z in zones:
            held = z.hold.total / self.duration if self.caps.holds else 0
            if held > 1.0001:  # one holder at a time: holds of one lock cannot add up past the window
                out.append(f"zone {z.key.label}: holds add up to {100 * held:.0f}% of the window; timestamps are "
                           "inconsistent (damaged or merged-out-of-order data), hold times are suspect")
        cpus = self.an.info.cpus
        spinning = totals.wait.total / self.duration if self.caps.waits else 0
        if cpus and spinning > cpus * 1.0001:
            out.append(f"waits add up to {spinning:.1f} CPUs on a {cpus}-CPU machine; timestamps or wait_ns values "
                       "are inconsistent (damaged data), wait times are suspect")
        return out
