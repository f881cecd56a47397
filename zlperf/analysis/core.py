"""The analysis core: a reader's chunks in, one :class:`~zlperf.analysis.summary.Summary` out.

Every front end (``zlperf report``, the perf script, the trace-cmd plugins) calls
:func:`analyze` or feeds an :class:`Analyzer` itself; none computes anything on its own.
Work per chunk is vectorised; what is kept between chunks is small (per-group counters,
exact value tables, the top-N lists and a binned timeline).
"""

from __future__ import annotations

__all__ = ["AnalysisOptions", "Analyzer", "analyze", "GroupStats"]

from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import numpy as np

from zlperf.analysis.kmem_abi import KmemZoneLockABI
from zlperf.analysis.series_abi import ZoneLockSeriesABI
from zlperf.analysis.stock_abi import StockContentionABI
from zlperf.analysis.model import Observations, Table, ZoneTable, table_len
from zlperf.analysis.grouping import KeyCoder, split_by_code
from zlperf.analysis.stats import Distribution, log2_bucket
from zlperf.analysis.summary import Summary, build_summary
from zlperf.analysis.timeline import Timeline
from zlperf.errors import ZlperfError
from zlperf.events import MISSED_EVENTS, Chunk, TraceInfo, TraceReader

#: ABI names for AnalysisOptions.abi, in the lanes' order of preference.
ABIS = ("kmem", "series", "stock")

#: Dimensions a report can be grouped by, and the observation column holding the key.
DIMENSIONS = {"zone": "zone", "caller": "caller", "cpu": "cpu", "task": "pid"}


@dataclass
class AnalysisOptions:
    """What to analyse: a time window (trace-clock ns), one zone, how many worst cases."""

    since_ns: Optional[int] = None
    until_ns: Optional[int] = None
    zone: Optional[str] = None  #: label "NODE:NAME" (or "lock@0x..." for address-only zones)
    top: int = 10
    bin_ns: int = 1_000_000  #: finest timeline resolution (it coarsens as the recording grows)
    zone_lock_frames: Optional[dict[str, str]] = None  #: stock kernels: replaces stock_frames.ZONE_LOCK_FRAMES
    abi: str = "auto"  #: "kmem", "series" or "stock" to read that ABI when a file has several (see ABIS)


COUNTERS = ("contended_events", "acquisitions", "contended", "unmatched_unlocks", "unreleased",
            "broken_by_missed")


@dataclass
class GroupStats:
    """Counters and exact distributions of one zone / caller / CPU / task (a read-only view)."""

    contended_events: int = 0
    acquisitions: int = 0
    contended: int = 0
    wait: Distribution = field(default_factory=Distribution)
    hold: Distribution = field(default_factory=Distribution)
    unmatched_unlocks: int = 0
    unreleased: int = 0
    broken_by_missed: int = 0


class DimStats:
    """Per-group counters of one dimension as arrays indexed by dense key codes.

    Counting is a bincount per table; only the wait/hold distributions are per group.
    """

    def __init__(self) -> None:
        self.coder = KeyCoder()
        self.counts = {name: np.zeros(0, dtype=np.int64) for name in COUNTERS}
        self.wait: list[Distribution] = []
        self.hold: list[Distribution] = []

    def codes(self, keys: np.ndarray) -> np.ndarray:
        """Dense codes of ``keys``, growing the per-group storage for new ones."""
        codes = self.coder.encode(keys)
        n = len(self.coder)
        if n > len(self.wait):
            for name, arr in self.counts.items():
                self.counts[name] = np.concatenate([arr, np.zeros(n - len(arr), dtype=np.int64)])
            self.wait.extend(Distribution() for _ in range(n - len(self.wait)))
            self.hold.extend(Distribution() for _ in range(n - len(self.hold)))
        return codes

    def count(self, codes: np.ndarray, counter: str) -> None:
        self.counts[counter] += np.bincount(codes, minlength=len(self.coder))

    def distribute(self, codes: np.ndarray, values: np.ndarray, which: str) -> None:
        dists = self.wait if which == "wait" else self.hold
        for code, idx in split_by_code(codes, len(self.coder)):
            dists[code].add(values[idx])

    def total(self) -> GroupStats:
        """All groups together: every row belongs to exactly one group of a dimension."""
        wait, hold = Distribution(), Distribution()
        for d in self.wait:
            wait.merge(d)
        for d in self.hold:
            hold.merge(d)
        return GroupStats(wait=wait, hold=hold, **{name: int(arr.sum()) for name, arr in self.counts.items()})

    def items(self) -> Iterator[tuple[int, GroupStats]]:
        """(key, GroupStats) per group seen."""
        for code, key in enumerate(self.coder.keys):
            g = GroupStats(wait=self.wait[code], hold=self.hold[code],
                           **{name: int(arr[code]) for name, arr in self.counts.items()})
            yield key, g


class TopN:
    """The N largest values seen, with where and when they happened."""

    def __init__(self, n: int):
        self.n = n
        self.rows: Optional[Table] = None

    def add(self, table: Table, value_col: str) -> None:
        if not table_len(table) or self.n <= 0:
            return
        merged = table if self.rows is None else {k: np.concatenate([self.rows[k], table[k]]) for k in self.rows}
        values = merged[value_col]
        if len(values) > self.n:
            keep = np.argpartition(values, len(values) - self.n)[-self.n:]
            merged = {k: v[keep] for k, v in merged.items()}
        self.rows = merged

    def sorted_rows(self, value_col: str) -> list[dict]:
        if self.rows is None:
            return []
        order = np.argsort(self.rows[value_col], kind="stable")[::-1]
        return [{k: v[i].item() for k, v in self.rows.items()} for i in order]


def _filter(table: Optional[Table], mask_fn: Callable[[Table], np.ndarray]) -> Optional[Table]:
    if not table_len(table):
        return table
    mask = mask_fn(table)
    if mask.all():
        return table
    return {k: v[mask] for k, v in table.items()}


class Aggregate:
    """Everything accumulated from one ABI's observations: per-group counters and distributions,
    hold time by batch size, the worst cases, the timeline and the contended stacks."""

    def __init__(self, options: AnalysisOptions):
        self.dims: dict[str, DimStats] = {d: DimStats() for d in DIMENSIONS}
        self.hold_by_batch: dict[int, Distribution] = {}
        self.top_waits = TopN(options.top)
        self.top_holds = TopN(options.top)
        # Series ("all", 0), ("zone", code), ("caller", addr): see zlperf.analysis.timeline.COLUMNS.
        self.timeline = Timeline(options.bin_ns)
        self.stacks: dict[bytes, list] = {}  # frames bytes -> [frames, count] of contended events

    def account(self, obs: Observations) -> None:
        """Add one chunk's observations (already windowed)."""
        self._count(obs.contended, "contended_events", timeline_col=0)
        if table_len(obs.contended) and "stack" in obs.contended:
            self._count_stacks(obs.contended["stack"])
        if table_len(obs.acquired):
            codes = self._count(obs.acquired, "acquisitions", timeline_col=1)
            contended = obs.acquired["contended"]
            for dim, c in codes.items():
                dim.count(c[contended], "contended")
        if table_len(obs.waits):
            self._distribute(obs.waits, "wait", "wait_ns", timeline_cols=(2, 3))
            self.top_waits.add(obs.waits, "wait_ns")
        if table_len(obs.holds):
            self._distribute(obs.holds, "hold", "hold_ns", timeline_cols=(4, 5))
            self.top_holds.add(obs.holds, "hold_ns")
            if "count" in obs.holds:  # batch sizes exist only in the kmem ABI
                buckets = log2_bucket(np.maximum(obs.holds["count"], 0).astype(np.uint64))
                for bucket, idx in split_by_code(buckets, int(buckets.max()) + 1):
                    self.hold_by_batch.setdefault(bucket, Distribution()).add(obs.holds["hold_ns"][idx])
        self._count(obs.unmatched, "unmatched_unlocks")
        self._count(obs.unreleased, "unreleased")
        self._count(obs.broken, "broken_by_missed")

    def _count_stacks(self, stacks: np.ndarray) -> None:
        """Count identical stacks (contended events are rare: a plain loop)."""
        for frames in stacks:
            if frames is None or not len(frames):
                continue
            frames = np.asarray(frames, dtype=np.uint64)
            key = frames.tobytes()
            entry = self.stacks.get(key)
            if entry is None:
                self.stacks[key] = [frames, 1]
            else:
                entry[1] += 1

    def _codes(self, table: Table) -> dict[DimStats, np.ndarray]:
        """Dense group codes of every row, for each dimension (totals are summed from the zones)."""
        out = {}
        for dim, col in DIMENSIONS.items():
            out[self.dims[dim]] = self.dims[dim].codes(table[col])
        return out

    def _count(self, table: Optional[Table], counter: str,
               timeline_col: Optional[int] = None) -> dict[DimStats, np.ndarray]:
        if not table_len(table):
            return {}
        codes = self._codes(table)
        for dim, c in codes.items():
            dim.count(c, counter)
        if timeline_col is not None:
            self._bin(table, codes, [(timeline_col, None)])
        return codes

    def _distribute(self, table: Table, which: str, col: str, timeline_cols: tuple[int, int]) -> None:
        values = table[col]
        codes = self._codes(table)
        for dim, c in codes.items():
            dim.distribute(c, values, which)
        self._bin(table, codes, [(timeline_cols[0], None), (timeline_cols[1], values)])

    def _bin(self, table: Table, codes: dict[DimStats, np.ndarray], columns: list) -> None:
        """Add rows into timeline counters: overall, per zone, per caller (``columns`` as Timeline.add)."""
        zone, caller = self.dims["zone"], self.dims["caller"]
        self.timeline.add(table["ts"], [("all", None, [0]), ("zone", codes[zone], zone.coder.keys),
                                         ("caller", codes[caller], caller.coder.keys)], columns)


class Analyzer:
    """Streaming aggregation of one recording. Feed chunks, then :meth:`summary`."""

    def __init__(self, info: TraceInfo, options: Optional[AnalysisOptions] = None):
        self.info = info
        self.options = options or AnalysisOptions()
        self.zones = ZoneTable()
        # One lane per event ABI, in order of preference: the seed patch's kmem events (waits and
        # holds with zone names), the rival zone_lock:* series (waits and holds by zone pointer),
        # lock:contention_* (contended waits only, zones found by stacks). A file's stored formats
        # do not tell which were recorded (`trace-cmd extract` saves every format), so each lane
        # watches for its own events; the report comes from the first lane that saw any.
        self.lanes: list[tuple[object, Aggregate]] = [
            (KmemZoneLockABI(self.zones), Aggregate(self.options)),
            (ZoneLockSeriesABI(self.zones, self.info), Aggregate(self.options)),
            (StockContentionABI(self.zones, self.info, self.options.zone_lock_frames), Aggregate(self.options)),
        ]
        self.abi = None  #: the chosen adapter, once :meth:`summary` has chosen
        self.agg: Optional[Aggregate] = None  #: its aggregation
        self.abi_found = False  #: whether any lane saw its events
        self.event_counts: dict[str, int] = {}
        self.missed_events = 0
        self.missed_unknown_gaps = 0
        self.missed_by_cpu: dict[int, int] = {}
        self.first_ts: Optional[int] = None
        self.last_ts: Optional[int] = None

    # -- feeding ----------------------------------------------------------------------------
    def feed(self, chunk: Chunk) -> None:
        """Account one chunk from the reader."""
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
            if any(name in chunk.batches for name in adapter.events) or MISSED_EVENTS in chunk.batches:
                agg.account(self._window(adapter.observe(chunk)))

    def _count_missed(self, batch) -> None:
        counts = batch.fields["count"].astype(np.int64)
        known = counts >= 0
        self.missed_events += int(counts[known].sum())
        self.missed_unknown_gaps += int((~known).sum())
        for cpu, c in zip(batch.cpu.tolist(), counts.tolist()):
            self.missed_by_cpu[cpu] = self.missed_by_cpu.get(cpu, 0) + max(c, 0)

    def _window(self, obs: Observations) -> Observations:
        opts = self.options
        zone_code = None
        if opts.zone is not None:
            zone_code = self.zones.find(opts.zone)
            if zone_code is None:
                zone_code = -2  # not seen (yet): filters everything of this chunk out
        if opts.since_ns is None and opts.until_ns is None and zone_code is None:
            return obs

        def mask(t: Table) -> np.ndarray:
            m = np.ones(len(t["ts"]), dtype=bool)
            if opts.since_ns is not None:
                m &= t["ts"] >= np.uint64(opts.since_ns)
            if opts.until_ns is not None:
                m &= t["ts"] <= np.uint64(opts.until_ns)
            if zone_code is not None:
                m &= t["zone"] == zone_code
            return m

        return Observations(**{k: _filter(getattr(obs, k), mask) for k in obs.__dataclass_fields__})

    # -- result ------------------------------------------------------------------------------
    def summary(self) -> Summary:
        """Finish the stream (unreleased acquisitions at the end) and build the summary."""
        if self.abi is None:
            lanes = self.lanes
            if self.options.abi != "auto":
                lanes = [self.lanes[ABIS.index(self.options.abi)]]
            seen = [(a, g) for a, g in lanes if any(self.event_counts.get(e) for e in a.events)]
            self.abi, self.agg = seen[0] if seen else lanes[0]  # none: say what is missing
            self.abi_found = bool(seen)
            self.agg.account(self._window(self.abi.finish()))
        return build_summary(self)


def analyze(reader: TraceReader, options: Optional[AnalysisOptions] = None) -> Summary:
    """Read every chunk of ``reader`` and return the summary."""
    analyzer = Analyzer(reader.info, options)
    for chunk in reader.chunks():
        analyzer.feed(chunk)
    doc = analyzer.summary()  # zones of stock recordings are only known once the stream is finished
    if options and options.zone and analyzer.zones.find(options.zone) is None:
        known = ", ".join(z.label for z in analyzer.zones.zones) or "none"
        raise ZlperfError(f"{reader.info.path}: zone {options.zone!r} not in this recording (zones: {known})")
    return doc
