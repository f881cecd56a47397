"""Interval results of a live stream: the core's adapters kept across intervals, a fresh aggregate per interval.

``zlperf top`` and ``zlperf exporter`` feed chunks as they read them and take one result per interval; pairing
state carries over (acquisitions waiting for their release, stock waits waiting for their lock to be named).
"""

from __future__ import annotations

__all__ = ["IntervalAnalyzer", "Interval", "ZoneCaller"]

from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Mapping, Optional

import numpy as np

from zlperf.analysis.abi import AbiAdapter
from zlperf.analysis.aggregate import Aggregate, DimStats
from zlperf.analysis.core import Analyzer, ResultBuilder
from zlperf.analysis.grouping import split_by_code
from zlperf.analysis.model import Observations, Table, has_rows
from zlperf.analysis.options import AnalysisOptions
from zlperf.analysis.result import AnalysisResult, CallerKey, Group, ZoneKey
from zlperf.events import Chunk, TraceInfo

#: Stock kernels: waits kept while their lock is not known as a zone lock (see AnalysisOptions.max_held_waits).
MAX_HELD_WAITS = 50_000
#: Task names kept between intervals.
MAX_TASK_NAMES = 65_536


@dataclass
class ZoneCaller:
    """One (zone, caller) pair of an interval: its counters, waits and holds (exporters label by both)."""

    zone: ZoneKey
    group: Group  #: key: the caller


@dataclass
class Interval:
    """What one interval of a live stream showed: the result as ``zlperf report`` builds it, plus zone x caller."""

    result: AnalysisResult
    zone_callers: list[ZoneCaller] = field(default_factory=list)  #: most contended events first
    events: int = 0  #: events decoded in the interval (every name, gaps not counted)


class _IntervalAggregate(Aggregate):
    """An :class:`Aggregate` that also keeps counters, waits and holds per (zone, caller)."""

    def __init__(self, options: AnalysisOptions):
        super().__init__(options)
        self.by_zone: dict[int, DimStats] = {}  # zone code -> DimStats by caller address

    def account(self, obs: Observations) -> None:
        """Add one chunk's observations, also per (zone, caller)."""
        super().account(obs)
        self._cross(obs.contended, "contended_events")
        self._cross(obs.acquired, "acquisitions")
        if has_rows(obs.acquired):
            contended = obs.acquired["contended"]
            self._cross({k: v[contended] for k, v in obs.acquired.items()}, "contended")
        for table, col, which in ((obs.waits, "wait_ns", "wait"), (obs.holds, "hold_ns", "hold")):
            if not has_rows(table):
                continue
            for zone, rows in self._zones(table):
                dim = self.by_zone.setdefault(zone, DimStats())
                dim.distribute(dim.codes(table["caller"][rows]), table[col][rows], which)

    @staticmethod
    def _zones(table: Table) -> Iterator[tuple[int, np.ndarray]]:
        zone = table["zone"].astype(np.int64)
        ok = np.flatnonzero(zone >= 0)  # rows without a zone (-1) belong to no zone
        if not len(ok):
            return iter(())
        return ((code, ok[rows]) for code, rows in split_by_code(zone[ok], int(zone[ok].max()) + 1))

    def _cross(self, table: Optional[Table], counter: str) -> None:
        if not has_rows(table):
            return
        for zone, rows in self._zones(table):
            dim = self.by_zone.setdefault(zone, DimStats())
            dim.count(dim.codes(table["caller"][rows]), counter)


class IntervalAnalyzer(Analyzer):
    """An :class:`Analyzer` for a stream without an end: :meth:`take` returns the interval so far and starts the next.

    Counters, distributions, worst cases and the timeline start again each interval; the ABI adapters (their
    pairing state) and the zone table go on. Holders are searched in the interval and the one before it.
    ``zone_names`` (lock address -> node, zone name) is asked before each interval is built: zones seen by
    address alone (lock:contention_*) get their names once the side program has read them.
    """

    def __init__(self, info: TraceInfo, options: Optional[AnalysisOptions] = None,
                 zone_names: Callable[[], Mapping[int, tuple[int, str]]] = dict):
        options = options or AnalysisOptions()
        if options.max_held_waits is None:  # a stream without an end must not keep every other lock's wait
            options = replace(options, max_held_waits=MAX_HELD_WAITS)
        super().__init__(info, options)
        self.zone_names = zone_names
        self.lanes = [(adapter, _IntervalAggregate(self.options)) for adapter, _ in self.lanes]
        self.total_events: dict[str, int] = {}  #: every interval's event counts added up
        self.total_missed = 0  #: events the kernel said were lost, all intervals
        self.total_unknown_gaps = 0  #: gaps of unknown size, all intervals

    def feed(self, chunk: Chunk) -> None:
        """Account one chunk (any CPU, in each CPU's order)."""
        before = dict(self.event_counts)
        missed, gaps = self.missed_events, self.missed_unknown_gaps
        super().feed(chunk)
        for name, n in self.event_counts.items():
            if n != before.get(name, 0):
                self.total_events[name] = self.total_events.get(name, 0) + n - before.get(name, 0)
        self.total_missed += self.missed_events - missed
        self.total_unknown_gaps += self.missed_unknown_gaps - gaps

    def take(self) -> Interval:
        """The interval since the last call (or the start), as a result; the next interval begins empty."""
        # Waits the stock adapter holds back one chunk (for a stack that may open the next) are complete
        # once the reader has caught up: an empty chunk lets them out into this interval.
        for adapter, agg in self.lanes:
            if any(self.total_events.get(e) for e in adapter.events):
                agg.account(self._window(adapter.observe(Chunk())))
        self.zones.name_locks(self.zone_names())
        adapter, agg, found = self._lane(self.total_events)
        assert isinstance(agg, _IntervalAggregate)
        fresh: list[tuple[AbiAdapter, Aggregate]] = []
        for a, g in self.lanes:
            nxt = _IntervalAggregate(self.options)
            nxt.holders = g.holders.carry()  # before the build finishes (and empties) this interval's
            fresh.append((a, nxt))
        builder = ResultBuilder(self, adapter, agg, found)
        result = builder.build()
        interval = Interval(result, self._zone_callers(builder, agg), sum(self.event_counts.values()))
        self.lanes = fresh
        self.event_counts = {}
        self.missed_events = self.missed_unknown_gaps = 0
        self.missed_by_cpu = {}
        self.first_ts = self.last_ts = None
        if len(self.comms) > MAX_TASK_NAMES:  # pids come and go: forget the names of old ones
            self.comms = dict(self.info.cmdlines)
        return interval

    def _zone_callers(self, builder: ResultBuilder, agg: _IntervalAggregate) -> list[ZoneCaller]:
        out = []
        for code, dim in agg.by_zone.items():
            z = self.zones.zones[code]
            zone = ZoneKey(label=z.label, node=z.node, name=z.name, lock_addr=z.lock_addr, zone_ptr=z.zone_ptr)
            for addr, g in dim.items():
                out.append(ZoneCaller(zone, builder.group(CallerKey(builder.sym(addr), addr), g)))
        out.sort(key=lambda zc: (-zc.group.counts.contended_events, -zc.group.wait.count, zc.zone.label,
                                 zc.group.key.symbol))  # type: ignore[union-attr]
        return out
