"""Stock kernels (v5.19+): zone->lock waits found among lock:contention_begin/end by their stacks.

contention_begin/end fire on the slow path of every contended lock: no uncontended
acquisitions, no release, so no hold time. Wait = end - begin on the same CPU for the same
lock_addr (the latest unpaired begin). A wait is a zone->lock wait when the first frame
outside the locking code of its begin's stack is a page-allocator zone-lock path
(zlperf.analysis.stock_frames); after that, every wait on the same lock_addr is that zone's.

Stacks come from the ftrace ``kernel_stack`` event that follows the begin on its CPU
(trace-cmd -T / options/stacktrace) or from the ``common_callchain`` column (perf -g).
Contention events are rare next to other events, so the pairing is a plain per-CPU loop
done once at the end of the stream.
"""

from __future__ import annotations

__all__ = ["StockContentionABI", "BEGIN", "END"]

from collections import Counter
from typing import Optional

import numpy as np

from zlperf.analysis.model import Capabilities, Observations, Zone, ZoneTable
from zlperf.analysis.stacks import CallerResolver, StackFollower
from zlperf.analysis.stock_frames import ZONE_LOCK_FRAMES
from zlperf.events import MISSED_EVENTS, Chunk, TraceInfo

BEGIN = "lock:contention_begin"
END = "lock:contention_end"
_B, _E, _G = 0, 1, 3


class StockContentionABI:
    """Adapter from lock:contention_begin/end (+ stacks) to :class:`Observations`."""

    name = "lock:contention_begin/end (stock kernel, zone->lock found by stack frames)"
    events = (BEGIN, END)

    def __init__(self, zones: ZoneTable, info: TraceInfo, frames: Optional[dict[str, str]] = None):
        self.zones = zones
        self.info = info  # symbols are read at the end: --kallsyms may replace them after opening
        self.frames = frames if frames is not None else ZONE_LOCK_FRAMES
        self._parts: list[dict[str, np.ndarray]] = []
        self._stacks = StackFollower(BEGIN)
        self.stacks_seen = 0
        self.notes: list[str] = []
        self.unfinished = 0
        self.unmatched_ends = 0

    def observe(self, chunk: Chunk) -> Observations:
        """Collect begin (with its stack) / end / gap rows; everything is resolved in :meth:`finish`."""
        begin_stacks = self._stacks.stacks(chunk)  # also completes the last chunk's stack-less begins
        for name, kind in ((BEGIN, _B), (END, _E), (MISSED_EVENTS, _G)):
            b = chunk.batches.get(name)
            if b is None or not len(b):
                continue
            n = len(b)
            addr = b.fields["lock_addr"].astype(np.uint64) if "lock_addr" in b.fields else np.zeros(n, np.uint64)
            stack = begin_stacks if kind == _B else None
            self._parts.append({"kind": np.full(n, kind, np.int8), "cpu": b.cpu.astype(np.int32),
                                "seq": b.seq.astype(np.int64), "ts": b.ts.astype(np.uint64),
                                "pid": b.pid.astype(np.int32), "addr": addr,
                                "stack": stack if stack is not None else np.full(n, None, dtype=object)})
        return Observations()

    def finish(self) -> Observations:
        """Pair begins with ends per CPU, classify by stack, emit the zone-lock waits."""
        if not self._parts:
            return Observations()
        t = {k: np.concatenate([p[k] for p in self._parts]) for k in self._parts[0]}
        self._parts = []
        order = np.lexsort((t["seq"], t["cpu"]))
        kind, cpu, ts, pid, addr, stack = (t[k][order] for k in ("kind", "cpu", "ts", "pid", "addr", "stack"))
        waits = []  # (begin ts, cpu, pid, addr, wait_ns, frames)
        open_by_cpu: dict[int, dict[int, list]] = {}
        for i in range(len(kind)):
            c = int(cpu[i])
            opened = open_by_cpu.setdefault(c, {})
            k = kind[i]
            if k == _B:
                opened.setdefault(int(addr[i]), []).append([int(ts[i]), c, int(pid[i]), int(addr[i]), stack[i]])
            elif k == _E:
                lst = opened.get(int(addr[i]))
                if lst:
                    rec = lst.pop()
                    waits.append((rec[0], c, rec[2], rec[3], int(ts[i]) - rec[0], rec[4]))
                else:
                    self.unmatched_ends += 1
            else:  # a ring-buffer gap: waits open across it cannot be measured
                self.unfinished += sum(len(v) for v in opened.values())
                opened.clear()
        self.unfinished += sum(len(v) for o in open_by_cpu.values() for v in o.values())
        return self._classify(waits)

    def _classify(self, waits: list) -> Observations:
        resolver = CallerResolver(self.info)
        stacks = np.empty(len(waits), dtype=object)
        stacks[:] = [w[5] for w in waits]
        callers = resolver.callers(stacks, len(waits))
        self.stacks_seen += sum(1 for w in waits if w[5] is not None and len(w[5]))
        functions = [resolver.function_of(int(c)) if c else None for c in callers]
        zone_addrs = {w[3] for w, fn in zip(waits, functions) if fn in self.frames}
        keep = [i for i, w in enumerate(waits) if w[3] in zone_addrs]
        others = Counter(functions[i] or "?" for i, w in enumerate(waits) if w[3] not in zone_addrs)
        other_locks = len({w[3] for w in waits if w[3] not in zone_addrs})
        if others:
            top = ", ".join(f"{fn} {n}" for fn, n in others.most_common(5))
            self.notes.append(f"{sum(others.values())} waits on {other_locks} other locks not attributed to "
                              f"zone->lock (first frames outside locking code: {top})")
        named = self.info.zone_locks  # lock address -> (node, zone name), when the recorder saved it
        codes = np.array([self.zones.code(Zone(*named.get(waits[i][3], (None, None)), lock_addr=waits[i][3]))
                          for i in keep], dtype=np.int32)
        base = {
            "ts": np.array([waits[i][0] for i in keep], np.uint64),
            "cpu": np.array([waits[i][1] for i in keep], np.int32),
            "pid": np.array([waits[i][2] for i in keep], np.int32),
            "zone": codes,
            "caller": callers[keep] if keep else np.zeros(0, np.uint64),
        }
        waits_t = dict(base)
        waits_t["wait_ns"] = np.array([waits[i][4] for i in keep], np.uint64)
        contended = dict(base)
        contended["stack"] = np.empty(len(keep), dtype=object)
        contended["stack"][:] = [waits[i][5] for i in keep]
        return Observations(contended=contended, waits=waits_t)

    def capabilities(self, event_counts: dict[str, int]) -> Capabilities:
        """A stock kernel shows contended waits only; say what it cannot show."""
        caps = Capabilities(abi=self.name, profile="stock", contended_events=True, waits=True)
        caps.cannot.append("uncontended acquisitions and hold times: lock:contention_* fire only on the contended "
                           "slow path and no event marks the release (needs the zone-lock tracepoint patch)")
        if event_counts.get(BEGIN, 0) and not self.stacks_seen:
            caps.cannot.insert(0, "which waits are on zone->lock: this recording has no stacks (record with "
                                  "--profile stock, which enables them)")
        caps.notes = list(self.notes)
        if self.unfinished:
            caps.notes.append(f"{self.unfinished} waits had no contention_end (recording ended or events were missed)")
        return caps
