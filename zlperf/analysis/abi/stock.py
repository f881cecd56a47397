"""Stock kernels (v5.19+): zone->lock waits found among lock:contention_begin/end by their stacks.

contention_begin/end (kernel commit 16edd9b511a1 "locking: Add lock contention tracepoints",
v5.19) fire on the slow path of every contended lock: no uncontended acquisitions, no release,
so no hold time. Wait = end - begin on the same CPU for the same lock_addr (the latest unpaired
begin: a lock taken in an interrupt can nest inside another's wait). A wait is a zone->lock wait
when the first frame outside the locking code of its begin's stack is a page-allocator zone-lock
path (:mod:`.stock_frames`); from then on every wait on the same lock_addr is that zone's,
earlier ones included.

Stacks come from the ftrace ``kernel_stack`` event that follows the begin on its CPU
(trace-cmd -T / options/stacktrace) or from the ``common_callchain`` column (perf -g).
Streaming: open begins are carried per CPU; a finished wait waits one chunk for a stack that
may open the next chunk, then is emitted once its lock is known to be a zone lock, or kept (as a
compact row) until the lock is identified or the stream ends.
"""

from __future__ import annotations

__all__ = ["StockContentionABI", "BEGIN", "END"]

from collections import Counter
from typing import ClassVar, Mapping, Optional

import numpy as np

from zlperf.analysis.abi.stock_frames import ZONE_LOCK_FRAMES
from zlperf.analysis.model import Capabilities, Observations, Table, Zone, ZoneTable
from zlperf.analysis.options import AnalysisOptions
from zlperf.analysis.stacks import CallerResolver, StackFollower
from zlperf.events import MISSED_EVENTS, Chunk, TraceInfo

BEGIN = "lock:contention_begin"
END = "lock:contention_end"
_B, _E, _G = 0, 1, 3

# A finished wait: begin ts, cpu, pid, lock address, wait ns, (stacks array, row) of its begin.
_Wait = tuple


class StockContentionABI:
    """Adapter from lock:contention_begin/end (+ stacks) to :class:`Observations` (an :class:`AbiAdapter`)."""

    key: ClassVar[str] = "stock"
    name: ClassVar[str] = "lock:contention_begin/end (stock kernel, zone->lock found by stack frames)"
    events: ClassVar[tuple[str, ...]] = (BEGIN, END)
    #: A lock is named a zone lock by any CPU's wait, and then every CPU's waits on it count: CPUs analysed
    #: apart do not merge (such recordings are analysed in one pass).
    mergeable: ClassVar[bool] = False

    def __init__(self, zones: ZoneTable, info: TraceInfo, options: AnalysisOptions):
        self.zones = zones
        self.info = info
        self.frames = options.zone_lock_frames if options.zone_lock_frames is not None else ZONE_LOCK_FRAMES
        self.resolver = CallerResolver(info)
        self._stacks = StackFollower(BEGIN)
        self._open: dict[int, dict[int, list]] = {}  # cpu -> lock address -> begins still waiting (a stack)
        self._fresh: list[_Wait] = []  # finished in the last chunk: their stack may arrive with the next one
        self._held: dict[int, list] = {}  # lock address not (yet) known as a zone lock -> (wait, caller, function)
        self._held_count = 0
        self.max_held = options.max_held_waits
        self.forgotten = 0  # held waits dropped to stay within max_held (live streams)
        self._zone_locks: set[int] = set()
        self.stacks_seen = 0
        self.unfinished = 0
        self.unmatched_ends = 0

    def observe(self, chunk: Chunk) -> Observations:
        """Pair this chunk's begins and ends per CPU; emit the waits now known to be on zone locks."""
        begin_stacks = self._stacks.stacks(chunk)  # also completes the last chunk's stack-less begins
        ready, self._fresh = self._fresh, self._pair(chunk, begin_stacks)
        return self._classify(ready)

    def finish(self) -> Observations:
        """Close the stream: waits never ended are counted; waits on unidentified locks go to a note."""
        obs = self._classify(self._fresh)
        self._fresh = []
        self.unfinished += sum(len(v) for by_addr in self._open.values() for v in by_addr.values())
        self._open.clear()
        return obs

    def _pair(self, chunk: Chunk, begin_stacks: Optional[np.ndarray]) -> list[_Wait]:
        """Finished waits of this chunk, in each CPU's order (contention events are rare: a loop)."""
        parts = []
        for name, kind_of in ((BEGIN, _B), (END, _E), (MISSED_EVENTS, _G)):
            b = chunk.batches.get(name)
            if b is None or not len(b):
                continue
            n = len(b)
            addr = b.fields["lock_addr"].astype(np.uint64) if "lock_addr" in b.fields else np.zeros(n, np.uint64)
            parts.append((np.full(n, kind_of, np.int8), b.cpu.astype(np.int64), b.seq.astype(np.int64),
                          b.ts.astype(np.uint64), b.pid.astype(np.int64), addr, np.arange(n)))
        if not parts:
            return []
        kind, cpu, seq, ts, pid, addr, row = (np.concatenate(col) for col in zip(*parts))
        order = np.lexsort((seq, cpu))
        done: list[_Wait] = []
        for k, c, t, p, a, r in zip(kind[order].tolist(), cpu[order].tolist(), ts[order].tolist(),
                                    pid[order].tolist(), addr[order].tolist(), row[order].tolist()):
            opened = self._open.setdefault(c, {})
            if k == _B:
                opened.setdefault(a, []).append((t, c, p, a, (begin_stacks, r)))
            elif k == _E:
                waiting = opened.get(a)
                if waiting:
                    t0, c0, p0, a0, stack_ref = waiting.pop()
                    done.append((t0, c0, p0, a0, t - t0, stack_ref))
                else:
                    self.unmatched_ends += 1
            else:  # a ring-buffer gap: waits open across it cannot be measured
                self.unfinished += sum(len(v) for v in opened.values())
                opened.clear()
        return done

    def _classify(self, waits: list[_Wait]) -> Observations:
        """Waits on zone locks as observations; others kept by lock address until it is identified."""
        emit: list[tuple] = []
        for t, c, p, a, w, (stacks, r) in waits:
            frames = stacks[r] if stacks is not None else None
            if frames is not None and len(frames):
                self.stacks_seen += 1
            caller = int(self.resolver.callers(_one(frames), 1)[0])
            function = self.resolver.function_of(caller) if caller else None
            if a not in self._zone_locks and function in self.frames:
                self._zone_locks.add(a)
                released = self._held.pop(a, [])
                self._held_count -= len(released)
                emit.extend(released)
            entry = ((t, c, p, a, w, frames), caller, function)
            if a in self._zone_locks:
                emit.append(entry)
            else:
                self._held.setdefault(a, []).append(entry)
                self._held_count += 1
        if self.max_held is not None and self._held_count > self.max_held:
            self._forget()
        if not emit:
            return Observations()
        named = self.info.zone_locks  # lock address -> (node, zone name), when the recorder saved it
        def zone_of(addr: int) -> Zone:
            node, zone_name = named.get(addr, (None, None))
            return Zone(node=node, name=zone_name, lock_addr=addr)

        codes = np.array([self.zones.code(zone_of(e[0][3])) for e in emit], dtype=np.int32)
        base: Table = {
            "ts": np.array([e[0][0] for e in emit], np.uint64),  # the contended event: contention_begin
            "cpu": np.array([e[0][1] for e in emit], np.int32),
            "pid": np.array([e[0][2] for e in emit], np.int32),
            "zone": codes,
            "caller": np.array([e[1] for e in emit], np.uint64),
        }
        waits_t = dict(base)
        waits_t["wait_ns"] = np.array([e[0][4] for e in emit], np.uint64)
        waits_t["ts"] = base["ts"] + waits_t["wait_ns"]  # a wait is dated when it ended, as in every ABI
        contended = dict(base)
        contended["stack"] = np.empty(len(emit), dtype=object)
        contended["stack"][:] = [e[0][5] for e in emit]
        return Observations(contended=contended, waits=waits_t)

    def _forget(self) -> None:
        """Drop the held waits of the locks with the most until a quarter of the room is free: a zone lock is
        named by its first page-allocator wait, so the locks that pile up waits are other locks."""
        assert self.max_held is not None
        for addr in sorted(self._held, key=lambda k: -len(self._held[k])):
            if self._held_count <= self.max_held * 3 // 4:
                break
            dropped = self._held.pop(addr)
            self._held_count -= len(dropped)
            self.forgotten += len(dropped)

    def capabilities(self, event_counts: Mapping[str, int]) -> Capabilities:
        """A stock kernel shows contended waits only; say what it cannot show."""
        caps = Capabilities(abi=self.name, profile="stock", contended_events=True, waits=True)
        caps.cannot.append("uncontended acquisitions and hold times: lock:contention_* fire only on the contended "
                           "slow path and no event marks the release (needs the zone-lock tracepoint patch)")
        if event_counts.get(BEGIN, 0) and not self.stacks_seen:
            caps.cannot.insert(0, "which waits are on zone->lock: this recording has no stacks (record with "
                                  "--profile stock, which enables them)")
        others = Counter(fn or "?" for held in self._held.values() for _, _, fn in held)
        if others:
            top = ", ".join(f"{fn} {n}" for fn, n in others.most_common(5))
            caps.notes.append(f"{sum(others.values())} waits on {len(self._held)} other locks not attributed to "
                              f"zone->lock (first frames outside locking code: {top})")
        if self.forgotten:
            caps.notes.append(f"{self.forgotten} more waits on other locks were forgotten (at most {self.max_held} "
                              "are kept while their lock is not known)")
        if self.unfinished:
            caps.notes.append(f"{self.unfinished} waits had no contention_end (recording ended or events were missed)")
        return caps


def _one(frames: Optional[np.ndarray]) -> np.ndarray:
    out = np.empty(1, dtype=object)
    out[0] = frames
    return out
