"""The analysis result: everything a report says, as typed data (the public output of the core).

:func:`zlperf.analysis.analyze` returns an :class:`AnalysisResult`; the one report-document
writer (:func:`zlperf.report.build_document`), renderers and exporters read it. A result can
also be made from report documents (``zlperf merge``) or by an engine (fleet reports): its
distributions are anything that implements :class:`Stats`, exact or not, and say which.
"""

from __future__ import annotations

__all__ = [
    "Stats", "Counts", "ZoneKey", "CallerKey", "CpuKey", "TaskKey", "GroupKey", "Group", "BatchBucket",
    "WorstCase", "StackCount", "TimelineBins", "Source", "Window", "Missed", "AnalysisResult", "NO_STACK",
    "SLICES", "HolderOf", "Handoff", "HolderCost", "Holders", "HostSummary",
]

from dataclasses import dataclass, field
from typing import Any, Generic, Optional, Protocol, TypeVar, Union, runtime_checkable

import numpy as np

from zlperf.analysis.model import Capabilities

#: Equal time slices each zone/caller is cut into, to show the run's own noise (``zlperf diff``).
SLICES = 10
#: The one frame of the stack entry that counts contended events recorded without a stack.
NO_STACK = "(no stack)"


@runtime_checkable
class Stats(Protocol):
    """A distribution of nanosecond durations as the report needs it.

    :class:`zlperf.analysis.stats.Distribution` (exact) implements it; so do the distributions
    read back from documents (histograms) and those computed by an engine.
    """

    @property
    def count(self) -> int: ...

    @property
    def total(self) -> int: ...

    def summary(self) -> Optional[dict]:
        """The STATS dict (count, sum, min, max, mean, p50, p90, p99, p999, hist_log2,
        percentiles_from), or None when empty."""
        ...


@dataclass
class Counts:
    """Event counters of one group (or of the whole recording)."""

    contended_events: int = 0  #: contended-lock events (kmem: mm_zone_lock_contended; stock: zone-lock waits)
    acquisitions: int = 0  #: traced acquisitions
    contended: int = 0  #: acquisitions that were contended
    unmatched_unlocks: int = 0  #: releases with no acquisition before them on their CPU (trylock paths)
    unreleased: int = 0  #: acquisitions never seen released
    broken_by_missed: int = 0  #: pair sides next to ring-buffer gaps

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(*(a + b for a, b in zip(self.as_tuple(), other.as_tuple())))

    def as_tuple(self) -> tuple[int, ...]:
        return (self.contended_events, self.acquisitions, self.contended, self.unmatched_unlocks,
                self.unreleased, self.broken_by_missed)


@dataclass(frozen=True)
class ZoneKey:
    """A zone lock: (node, name) when known, else the lock address or struct zone pointer."""

    label: str  #: "1:Normal", "lock@0x...", "zone@0x..."
    node: Optional[int] = None
    name: Optional[str] = None
    lock_addr: Optional[int] = None
    zone_ptr: Optional[int] = None


@dataclass(frozen=True)
class CallerKey:
    """A caller: the symbolized return address (``func+0xoff``) and, from one recording, the address."""

    symbol: str
    addr: Optional[int] = None  #: None once merged from hosts (addresses differ between kernels)
    role: str = "lock"  #: "lock" (acquisitions, waits and holds are its own) or "unlock" (only releases)


@dataclass(frozen=True)
class CpuKey:
    """A CPU of one recording (``host`` set in merged results)."""

    cpu: int
    host: Optional[str] = None


@dataclass(frozen=True)
class TaskKey:
    """A task of one recording (``host`` set in merged results)."""

    pid: int
    comm: str
    host: Optional[str] = None


GroupKey = Union[ZoneKey, CallerKey, CpuKey, TaskKey]
#: The key of a :class:`Group`: one of the GroupKey classes, or None (the totals).
KeyT = TypeVar("KeyT", ZoneKey, CallerKey, CpuKey, TaskKey, None)


@dataclass
class Group(Generic[KeyT]):
    """Counters and distributions of one zone, caller, CPU or task (or of everything: ``totals``)."""

    key: KeyT  #: None for the totals
    counts: Counts
    wait: Stats
    hold: Stats
    #: (SLICES, len(timeline.COLUMNS)) counters over equal slices of the window, or None when not
    #: tracked (only zones and callers have them, and only a bounded number of groups).
    slices: Optional[np.ndarray] = None
    hosts: int = 1  #: recordings this group was seen in (merged results)


@dataclass
class BatchBucket:
    """Hold times of acquisitions whose batch (pages in the locked event's count) fell in [low, high]."""

    low: int
    high: int
    hold: Stats


@dataclass
class HolderOf:
    """Who held the lock behind one wait (see :mod:`zlperf.analysis.holders` for the rules)."""

    caller: str  #: the holder's locked caller, or NOT_TRACED / NO_ACQUISITION
    pid: Optional[int] = None  #: the releasing task (None when not traced)
    comm: Optional[str] = None
    cpu: Optional[int] = None
    release_ts_ns: Optional[int] = None
    hold_ns: Optional[int] = None  #: None when the holder's acquisition was not seen
    count: Optional[int] = None  #: the holder's batch size
    waited: bool = False  #: the holder's own acquisition was contended (a hand-off)


@dataclass
class Handoff:
    """Waits of one waiter caller behind one holder caller."""

    waiter_caller: str
    holder_caller: str
    waits: int
    wait_ns_sum: int


@dataclass
class HolderCost:
    """Waits one holder (caller, task, CPU) caused."""

    caller: str
    pid: int
    comm: str
    cpu: int
    waits: int
    wait_ns_sum: int
    host: Optional[str] = None


@dataclass
class Holders:
    """Who made the waiters wait: totals, waiter x holder pairs, costliest holders, convoys."""

    waits: int  #: contended acquisitions attributed (the window's waits)
    wait_ns_sum: int
    not_traced: int  #: waits with no traced holder in their window
    not_traced_wait_ns_sum: int
    no_acquisition_seen: int  #: waits behind a release without a seen acquisition (trylock paths, gaps)
    handed_off: int  #: waits behind a holder that had itself waited
    uncontended: int  #: zone_lock:* series: acquisitions with no holder inside their wait (left out)
    handoffs: list[Handoff]  #: every (waiter caller, holder caller) pair, most wait first
    by_caller: list[tuple[str, int, int]]  #: (holder caller, waits, wait ns) summed over waiters, most wait first
    top: list[HolderCost]  #: the holders that cost the most wait
    convoys: dict[int, int]  #: chain length -> number of maximal chains of back-to-back contended acquisitions


@dataclass
class WorstCase:
    """One of the longest waits or holds."""

    value_ns: int
    ts_ns: int
    cpu: int
    pid: int
    comm: str
    zone: Optional[str]  #: zone label
    caller: str  #: symbolized
    count: Optional[int] = None  #: batch size, when the ABI has one
    host: Optional[str] = None  #: merged results: which recording
    holder: Optional[HolderOf] = None  #: waits of hold-time recordings: who held the lock


@dataclass
class StackCount:
    """A distinct kernel stack of contended events (innermost frame first) and how many had it."""

    frames: tuple[str, ...]
    count: int


@dataclass
class TimelineBins:
    """The whole recording's counters in round bins: ``values[i]`` covers [start + i*width, +width)."""

    start_ns: int
    bin_ns: int
    columns: tuple[str, ...]
    values: np.ndarray  #: (bins, len(columns)) float64
    #: (bins, log2 buckets) waits per bin and log2 bucket of wait_ns (bucket as in hist_log2): the latency
    #: heatmap; None when unknown (documents written without it)
    wait_log2: Optional[np.ndarray] = None


@dataclass
class Source:
    """The recording (or recordings) the result describes."""

    path: str
    format: str
    clock: Optional[str]
    cpus: int
    kallsyms: Optional[str]  #: where symbols came from


@dataclass
class Window:
    """The time window analysed (trace-clock ns) and the zone filter."""

    first_ts_ns: int
    last_ts_ns: int
    since_ns: Optional[int] = None
    until_ns: Optional[int] = None
    zone: Optional[str] = None


@dataclass
class Missed:
    """Events the kernel reported lost (ring-buffer overruns)."""

    events: int = 0  #: counts the kernel stored
    unknown_gaps: int = 0  #: gaps whose size the kernel did not store
    by_cpu: dict[str, int] = field(default_factory=dict)  #: "cpu" (or "host:cpu") -> count
    kernel_overrun: int = 0  #: the kernel's overrun counters at the end of recording
    kernel_dropped_events: int = 0


@dataclass
class HostSummary:
    """One host of a fleet report: its recording and how contended it was."""

    host: str
    kernel: Optional[str]  #: the kernel release the recording was made on, when the file says
    recording: str  #: the recording's file name
    profile: str
    duration_ns: int
    cpus: int
    contended_events: Optional[int]  #: None (as every value below) when the recording cannot tell
    acquisitions: Optional[int]
    contended: Optional[int]
    wait: Optional[Stats]
    hold: Optional[Stats]


@dataclass
class AnalysisResult:
    """Everything one report shows. Groups are in report order (most contended first)."""

    source: Source
    capabilities: Capabilities
    window: Window
    duration_ns: int
    cpu_time_ns: int  #: CPU-time of the window: duration x CPUs, summed over recordings when merged
    events: dict[str, int]
    missed: Missed
    totals: Group[None]
    zones: list[Group[ZoneKey]]
    callers: list[Group[CallerKey]]
    cpus: list[Group[CpuKey]]
    tasks: list[Group[TaskKey]]
    hold_by_batch: list[BatchBucket]
    timeline: TimelineBins
    top_waits: list[WorstCase]
    top_holds: list[WorstCase]
    stacks: list[StackCount]  #: contended stacks, most common first; NO_STACK counts those without one
    warnings: list[str]
    holders: Optional[Holders] = None  #: None when the recording has no releases (no hold-time events)
    #: merged results: each recording's name, path, profile and duration; notes on what merging means
    merged_from: list[dict] = field(default_factory=list)
    merge_notes: dict[str, str] = field(default_factory=dict)
    hosts: list[HostSummary] = field(default_factory=list)  #: fleet reports: one row per host

    def groups(self, dimension: str) -> list[Group[Any]]:
        """The groups of ``dimension`` ("zone", "caller", "cpu" or "task")."""
        by_dimension: dict[str, list[Group[Any]]] = {"zone": self.zones, "caller": self.callers, "cpu": self.cpus,
                                                     "task": self.tasks}
        return by_dimension[dimension]
