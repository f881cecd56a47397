"""The rival series' events: zone_lock:zone_lock_start_locking / zone_lock_acquire_returned(success) /
zone_lock_released, keyed by the struct zone pointer (a 2026 series in review that wraps every zone->lock
user; the lab's port is lab/patches/zone-lock-series-6.12.patch).

No node, name, caller, count or wait time in the events: wait = acquire_returned -
start_locking and hold = released - acquire_returned, per CPU and zone pointer (the same
per-CPU pairing as the kmem ABI). A failed trylock is acquire_returned with success=false.
Callers come from stacks when they were recorded. start_locking fires before IRQs go off, so
an interrupt's own zone-lock use can nest inside a wait; such a wait is counted as broken
(unreleased/unmatched), never guessed.
"""

from __future__ import annotations

__all__ = ["ZoneLockSeriesABI", "START", "ACQUIRED", "RELEASED", "EVENTS"]

from typing import ClassVar, Mapping, Optional

import numpy as np

from zlperf.analysis.abi.kmem import releases
from zlperf.analysis.model import Capabilities, Observations, Table, Zone, ZoneTable
from zlperf.analysis.options import AnalysisOptions
from zlperf.analysis.pairing import CLOSE, GAP, OPEN, PerCpuPairer
from zlperf.analysis.stacks import CallerResolver, stacks_of
from zlperf.events import MISSED_EVENTS, Chunk, TraceInfo

START = "zone_lock:zone_lock_start_locking"
ACQUIRED = "zone_lock:zone_lock_acquire_returned"
RELEASED = "zone_lock:zone_lock_released"
EVENTS = (START, ACQUIRED, RELEASED)
_COLUMNS = ("ts", "cpu", "pid", "zone", "caller")


class ZoneLockSeriesABI:
    """Adapter from the zone_lock:* events to :class:`Observations` (an :class:`AbiAdapter`)."""

    key: ClassVar[str] = "series"
    name: ClassVar[str] = "zone_lock:* (the rival zone-lock tracepoint series, zones by struct zone pointer)"
    events: ClassVar[tuple[str, ...]] = EVENTS
    mergeable: ClassVar[bool] = True  #: per-CPU state only: CPUs analysed apart merge (see :meth:`absorb`)

    def __init__(self, zones: ZoneTable, info: TraceInfo, options: AnalysisOptions):
        self.zones = zones
        self.resolver = CallerResolver(info)
        self._waits = PerCpuPairer()
        self._holds = PerCpuPairer()
        self.failed_trylocks = 0
        self.stacks_seen = 0
        self.trylock_acquisitions = 0

    def _table(self, chunk: Chunk, name: str) -> Optional[Table]:
        b = chunk.batches.get(name)
        if b is None or not len(b):
            return None
        ptr = b.fields["zone"].astype(np.uint64)
        uniq, inverse = np.unique(ptr, return_inverse=True)
        codes = np.array([self.zones.code(Zone(zone_ptr=int(p))) for p in uniq], np.int32)[inverse.ravel()]
        stacks = stacks_of(chunk, name)
        if stacks is not None:
            self.stacks_seen += sum(1 for s in stacks if s is not None)
        return {"ts": b.ts.astype(np.uint64), "cpu": b.cpu.astype(np.int32), "pid": b.pid.astype(np.int32),
                "zone": codes, "caller": self.resolver.callers(stacks, len(b)), "seq": b.seq.astype(np.int64)}

    @staticmethod
    def _stream(kind: int, t: Optional[Table]) -> Optional[Table]:
        if t is None:
            return None
        return {"kind": np.full(len(t["ts"]), kind, np.int8), "key": t["zone"], **t}

    @staticmethod
    def _concat(parts: list) -> Table:
        parts = [p for p in parts if p is not None]
        if not parts:
            empty = {c: np.empty(0, np.uint64 if c in ("ts", "caller") else np.int32) for c in _COLUMNS}
            return {"kind": np.empty(0, np.int8), "key": np.empty(0, np.int32), "seq": np.empty(0, np.int64), **empty}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def observe(self, chunk: Chunk) -> Observations:
        """Pair start->acquire (waits) and acquire->release (holds) per CPU and zone."""
        return self._observe(chunk, final=False)

    def _observe(self, chunk: Chunk, final: bool) -> Observations:
        start = self._table(chunk, START)
        acq = self._table(chunk, ACQUIRED)
        rel = self._table(chunk, RELEASED)
        missed = chunk.batches.get(MISSED_EVENTS)
        gap = None
        if missed is not None and len(missed):
            n = len(missed)
            gap = {"kind": np.full(n, GAP, np.int8), "key": np.full(n, -1, np.int32),
                   "ts": missed.ts.astype(np.uint64), "cpu": missed.cpu.astype(np.int32),
                   "pid": missed.pid.astype(np.int32), "zone": np.full(n, -1, np.int32),
                   "caller": np.zeros(n, np.uint64), "seq": missed.seq.astype(np.int64)}
        ok = None
        if acq is not None:
            success = chunk.batches[ACQUIRED].fields["success"] != 0
            self.failed_trylocks += int((~success).sum())
            ok = {k: v[success] for k, v in acq.items()}
        obs = Observations()
        if ok is not None:
            obs.acquired = {c: ok[c] for c in (*_COLUMNS, "seq")}
            obs.acquired["contended"] = np.zeros(len(ok["ts"]), dtype=bool)  # unknown: capabilities say so
        w = self._waits.feed(self._concat([self._stream(OPEN, start), self._stream(CLOSE, ok), gap]), final=final)
        t = w.table
        # Acquisitions with no start_locking before them are successful trylocks, not anomalies.
        self.trylock_acquisitions += len(w.unmatched_close)
        obs.waits = {c: t[c][w.close_idx] for c in (*_COLUMNS, "seq")}
        obs.waits["wait_ns"] = t["ts"][w.close_idx] - t["ts"][w.open_idx]
        h = self._holds.feed(self._concat([self._stream(OPEN, ok), self._stream(CLOSE, rel), gap]), final=final)
        t = h.table
        obs.holds = {c: t[c][h.open_idx] for c in (*_COLUMNS, "seq")}
        obs.holds["hold_ns"] = t["ts"][h.close_idx] - t["ts"][h.open_idx]
        obs.unmatched = {c: t[c][h.unmatched_close] for c in (*_COLUMNS, "seq")}
        obs.unreleased = {c: t[c][h.unreleased_open] for c in (*_COLUMNS, "seq")}
        broken = np.concatenate([h.broken_open, h.broken_close])
        obs.broken = {c: t[c][broken] for c in (*_COLUMNS, "seq")}
        # The events say nothing of batch sizes or contention: releases carry neither.
        n = len(t["ts"])
        obs.releases = releases({**t, "count": np.full(n, -1, np.int32), "contended": np.zeros(n, np.bool_)}, h)
        return obs

    def finish(self) -> Observations:
        """Close both pairings: acquisitions still held at the end are unreleased."""
        return self._observe(Chunk(), final=True)

    def counters(self) -> dict:
        """What :meth:`absorb` needs of this adapter, once its CPUs are finished in another process."""
        return {"failed_trylocks": self.failed_trylocks, "stacks_seen": self.stacks_seen,
                "trylock_acquisitions": self.trylock_acquisitions}

    def absorb(self, counters: dict) -> bool:
        """Add the :meth:`counters` of the next CPUs' adapter (always as one pass would: True)."""
        self.failed_trylocks += counters["failed_trylocks"]
        self.stacks_seen += counters["stacks_seen"]
        self.trylock_acquisitions += counters["trylock_acquisitions"]
        return True

    def capabilities(self, event_counts: Mapping[str, int]) -> Capabilities:
        has = {e: event_counts.get(e, 0) > 0 for e in EVENTS}
        caps = Capabilities(abi=self.name, profile="zone-lock-series", contended_events=False,
                            acquisitions=has[ACQUIRED], waits=has[START] and has[ACQUIRED],
                            holds=has[ACQUIRED] and has[RELEASED], contended_flag=False)
        caps.cannot.append("contended vs uncontended acquisitions: these events carry no contended flag, so every "
                           "acquisition's start->acquire time is shown as its wait")
        caps.cannot.append("zone names: the events carry only the struct zone pointer")
        if not self.stacks_seen:
            caps.cannot.append("callers: no stacks were recorded (the events carry no caller)")
        caps.notes.append(f"{self.failed_trylocks} failed trylocks, {self.trylock_acquisitions} acquisitions "
                          "without start_locking (successful trylocks)")
        return caps
