"""``zlperf export FILE --perfetto OUT``: every wait and hold as a slice on its CPU's track, counters per zone,
a flow arrow from each holder to the waiter it released, and stock kernels' wait stacks as callstacks.

Two passes over the recording. Pass 1 is the analysis (:class:`~zlperf.analysis.Analyzer`): it says which
ABI the recording holds and, through ``Analyzer.attributed``, who held the lock behind every wait. Pass 2
streams the same ABI's observations (:class:`~zlperf.analysis.stream.ObservationStream`) and writes each
chunk's slices as it comes, so memory does not grow with the recording (the "CPUs waiting" counters need
the waits of all CPUs in time order: they keep 16 bytes per wait, and waits are the contended minority).

Layout (Perfetto's custom tracks): a "zone->lock" root with one track per CPU, ordered by CPU number, and
two counter tracks per zone ("CPUs waiting", "lock held"). On a CPU a wait ends where the acquisition's
hold begins, so slices follow each other; a slice that would overlap another on its CPU without nesting
in it (clocks that disagree, interrupts) goes to an extra "overlap" track under that CPU instead of
breaking the nesting Perfetto requires. A flow id is a wait's row in ``Analyzer.attributed`` + 1: it
starts at the end of the holder's hold slice (the release) and terminates at the end of the wait slice.
"""

from __future__ import annotations

__all__ = ["export_perfetto", "PerfettoExport"]

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from zlperf.analysis import Analyzer
from zlperf.analysis.abi import ADAPTERS
from zlperf.analysis.holders import NO_ACQUISITION, NOT_TRACED, Attributed
from zlperf.analysis.model import Observations, table_len
from zlperf.analysis.result import AnalysisResult
from zlperf.analysis.stream import ObservationStream
from zlperf.arrays import distinct
from zlperf.errors import ZlperfError
from zlperf.events import TraceInfo
from zlperf.export.perfetto_packets import PacketWriter
from zlperf.extras import require

#: uuids of the tracks: the root, then CPU tracks at ROOT + 1 + cpu, zone counters and overlap lanes above.
ROOT = 0x7A10_0000
_ZONES = ROOT + 0x10_0000
_LANES = ROOT + 0x20_0000
#: sibling ranks under the root: CPU n has rank n; zone counters come after every CPU.
_ZONE_RANK = 1 << 20
_WAIT, _HOLD = 0, 1


@dataclass
class PerfettoExport:
    """What one export wrote (the command prints it; tests compare it with the report)."""

    waits: int = 0
    holds: int = 0
    instants: int = 0  #: contended events without a measured wait (recordings without mm_zone_locked)
    flows: int = 0  #: flow ids started at a hold slice
    callstacks: int = 0  #: wait slices that carry a kernel callstack
    overlapping: int = 0  #: slices put on an overlap track of their CPU
    packets: int = 0
    cpus: list[int] = field(default_factory=list)


class _Flows:
    """Which wait each hold released, from ``Analyzer.attributed`` (flow id = wait row + 1)."""

    def __init__(self, att: Optional[Attributed], sym, comm):
        self.att, self.sym, self.comm = att, sym, comm
        if att is None:
            return
        order = np.argsort(att.waits["seq"], kind="stable")
        self.seq_sorted, self.seq_row = att.waits["seq"][order], order
        with_hold = np.flatnonzero(att.traced & (att.holder["holder_seq"] >= 0))
        rel = att.holder["ts"][with_hold]
        by_time = np.argsort(rel, kind="stable")
        self.rel_ts = rel[by_time]
        self.rel_cpu = att.holder["cpu"][with_hold][by_time]
        self.rel_hold = att.holder["hold_ns"][with_hold][by_time]
        self.rel_row = with_hold[by_time]

    def wait_rows(self, seq: np.ndarray) -> np.ndarray:
        """Row in the attribution of each wait (by its stream position), -1 when not attributed."""
        if self.att is None or not len(self.seq_sorted):
            return np.full(len(seq), -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.seq_sorted, seq), len(self.seq_sorted) - 1)
        return np.where(self.seq_sorted[pos] == seq, self.seq_row[pos], -1)

    def holder_text(self, row: int) -> str:
        """Who held the lock behind wait ``row``: ``caller, cpu N, comm-pid`` or the literals."""
        att = self.att
        if row < 0 or att is None or not att.traced[row]:
            return NOT_TRACED
        h = {k: v[row].item() for k, v in att.holder.items()}
        caller = self.sym(h["holder_caller"]) if h["holder_seq"] >= 0 else NO_ACQUISITION
        return f"{caller}, cpu {h['cpu']}, {self.comm(h['pid'])}-{h['pid']}"

    def flow_of(self, row: int) -> int:
        """The flow id ending at wait ``row`` (0: its holder has no hold slice)."""
        att = self.att
        if row < 0 or att is None or not att.traced[row] or att.holder["holder_seq"][row] < 0:
            return 0
        return row + 1

    def released(self, cpu: np.ndarray, release: np.ndarray, hold_ns: np.ndarray) -> dict[int, list[int]]:
        """Hold row -> flow ids of the waits its release let in (only rows that released a waiter)."""
        if self.att is None or not len(self.rel_ts):
            return {}
        lo = np.searchsorted(self.rel_ts, release, side="left")
        hi = np.searchsorted(self.rel_ts, release, side="right")
        out: dict[int, list[int]] = {}
        for i in np.flatnonzero(hi > lo).tolist():  # one per traced wait in the whole recording: few
            ids = [int(self.rel_row[j]) + 1 for j in range(int(lo[i]), int(hi[i]))
                   if self.rel_cpu[j] == cpu[i] and self.rel_hold[j] == hold_ns[i]]
            if ids:
                out[i] = ids
        return out


class _Lane:
    """One track of a CPU: its open slices (a stack of end times and END payloads) and the sweep position."""

    __slots__ = ("uuid", "stack", "last")

    def __init__(self, uuid: int):
        self.uuid = uuid
        self.stack: list[tuple] = []  # (end ts, flows out, flows in, counters at the end)
        self.last = -1  # start of the latest slice placed

    def fits(self, start: int, end: int) -> bool:
        """Whether a slice [start, end] nests in or follows the open ones (never crosses them)."""
        if start < self.last:
            return False
        j = len(self.stack)
        while j and self.stack[j - 1][0] <= start:
            j -= 1
        return not j or end <= self.stack[j - 1][0]


class _Exporter:
    """Pass 2: observations in, packets out (see the module docstring for the layout)."""

    def __init__(self, writer: PacketWriter, info: TraceInfo, result: AnalysisResult, analyzer: Analyzer,
                 stream: ObservationStream, abi: str):
        self.w, self.stream, self.abi = writer, stream, abi
        self.caps = result.capabilities
        self.symbols = info.symbols if info.symbols is not None and len(info.symbols) else None
        self.comms = analyzer.comms
        self.stats = PerfettoExport()
        self._callers: dict[int, str] = {}
        self._functions: dict[int, str] = {}
        self.flows = _Flows(analyzer.attributed, self.caller, self.comm)
        self.lanes: dict[int, list[_Lane]] = {}
        self.zone_tracks: dict[str, tuple[int, int]] = {}  # label -> (waiting uuid, held uuid)
        self.waiting: dict[str, list[np.ndarray]] = {}  # label -> [starts, ends] parts (the waiting counter)
        writer.track(ROOT, "zone->lock", explicit_order=True)
        for cpu in sorted({g.key.cpu for g in result.cpus}):
            self.cpu_lanes(cpu)

    # -- names ---------------------------------------------------------------------------------------
    def caller(self, addr: int) -> str:
        """``func+0xoff`` as the report prints callers (hex without symbols)."""
        text = self._callers.get(addr)
        if text is None:
            if addr == 0:
                text = "(unknown: no stack recorded)"
            else:
                text = self.symbols.symbolize(addr) if self.symbols is not None else f"{addr:#x}"
            self._callers[addr] = text
        return text

    def function(self, addr: int) -> str:
        """A stack frame's function name (frames of one function merge in the flame graph)."""
        text = self._functions.get(addr)
        if text is None:
            name = self.symbols.function(addr) if self.symbols is not None else None
            text = self._functions[addr] = name or f"{addr:#x}"
        return text

    def comm(self, pid: int) -> str:
        return self.comms.get(pid, "<...>")

    # -- tracks --------------------------------------------------------------------------------------
    def cpu_lanes(self, cpu: int) -> list[_Lane]:
        lanes = self.lanes.get(cpu)
        if lanes is None:
            uuid = ROOT + 1 + cpu
            self.w.track(uuid, f"cpu {cpu}", parent=ROOT, rank=cpu)
            lanes = self.lanes[cpu] = [_Lane(uuid)]
            self.stats.cpus.append(cpu)
        return lanes

    def zone(self, label: str) -> tuple[int, int]:
        """(CPUs waiting, lock held) counter tracks of a zone, made on first use."""
        tracks = self.zone_tracks.get(label)
        if tracks is None:
            n = len(self.zone_tracks)
            tracks = self.zone_tracks[label] = (_ZONES + 2 * n, _ZONES + 2 * n + 1)
            self.w.track(tracks[0], f"{label} CPUs waiting", parent=ROOT, rank=_ZONE_RANK + 2 * n, counter=True)
            if self.caps.holds:
                self.w.track(tracks[1], f"{label} lock held", parent=ROOT, rank=_ZONE_RANK + 2 * n + 1, counter=True)
        return tracks

    def lane_for(self, cpu: int, start: int, end: int) -> _Lane:
        lanes = self.cpu_lanes(cpu)
        for lane in lanes:
            if lane.fits(start, end):
                break
        else:
            lane = _Lane(_LANES + 256 * cpu + len(lanes))
            self.w.track(lane.uuid, f"cpu {cpu} overlap {len(lanes)}", parent=lanes[0].uuid)
            lanes.append(lane)
        if lane is not lanes[0]:
            self.stats.overlapping += 1
        self.pop(lane, start)
        lane.last = start
        return lane

    def pop(self, lane: _Lane, upto: Optional[int]) -> None:
        """END events of the lane's open slices that end by ``upto`` (all of them for None), innermost first."""
        while lane.stack and (upto is None or lane.stack[-1][0] <= upto):
            end, out, into, counters = lane.stack.pop()
            self.w.end(lane.uuid, end, flows=out, terminating=into, counters=counters)

    # -- observations --------------------------------------------------------------------------------
    def add(self, obs: Observations) -> None:
        """Write one chunk's waits, holds (and contended events of recordings without waits)."""
        parts = []
        if table_len(obs.waits):
            parts.append(self._waits(obs))
        if table_len(obs.holds):
            parts.append(self._holds(obs))
        if table_len(obs.contended) and not self.caps.waits:
            self._instants(obs)
        if not parts:
            return
        start, end, cpu, kind, row = (np.concatenate(c) for c in zip(*(p[0] for p in parts)))
        emitters = {int(p[0][3][0]): p[1] for p in parts}  # kind -> its writer
        order = np.lexsort((-end, kind, start, cpu))
        for i in order.tolist():
            k, r = int(kind[i]), int(row[i])
            s, e = int(start[i]), int(end[i])
            lane = self.lane_for(int(cpu[i]), s, e)
            emitters[k](lane, s, e, r)

    def _zone_labels(self, codes: np.ndarray) -> list[str]:
        labels = {c: (z.label if (z := self.stream.zone(c)) is not None else "?") for c in distinct(codes).tolist()}
        return [labels[c] for c in codes.tolist()]

    def _waits(self, obs: Observations):
        t = obs.waits
        n = len(t["ts"])
        ts = t["ts"].astype(np.int64)
        wait = t["wait_ns"].astype(np.int64)
        start, end = np.maximum(ts - wait, 0), ts  # a wait row's ts is when it ended (every ABI)
        zones, callers = self._zone_labels(t["zone"]), t["caller"].tolist()
        pids, cpus = t["pid"].tolist(), t["cpu"].tolist()
        rows = self.flows.wait_rows(t["seq"]) if "seq" in t else np.full(n, -1, np.int64)
        holders = self.flows.att is not None
        stacks = None
        c = obs.contended
        if c is not None and "stack" in c and table_len(c) == n and (c["ts"] == t["ts"] - t["wait_ns"]).all():
            stacks = c["stack"]  # stock: one contended row (dated at its begin) per wait, in the same order
        for code in distinct(t["zone"]).tolist():  # every wait is written: its span counts now
            m = t["zone"] == code
            self.waiting.setdefault(zones[int(np.flatnonzero(m)[0])], []).append(np.stack([start[m], end[m]], axis=1))

        def emit(lane: _Lane, s: int, e: int, r: int) -> None:
            label = zones[r]
            args = [("caller", self.caller(callers[r])), ("zone", label), ("task", f"{self.comm(pids[r])}-{pids[r]}")]
            row = int(rows[r])
            if holders:
                args.append(("holder", self.flows.holder_text(row)))
            frames = None
            if stacks is not None and stacks[r] is not None and len(stacks[r]):
                frames = [self.function(int(a)) for a in stacks[r][::-1] if a]  # outermost first
                self.stats.callstacks += 1
            self.zone(label)
            self.w.begin(lane.uuid, s, f"wait {label}", args, callstack=frames, weight=float(e - s))
            flow = self.flows.flow_of(row)
            lane.stack.append((e, (), (flow,) if flow else (), ()))
            self.stats.waits += 1

        return (start, end, np.asarray(cpus, np.int64), np.full(n, _WAIT, np.int8), np.arange(n)), emit

    def _holds(self, obs: Observations):
        t = obs.holds
        n = len(t["ts"])
        start = t["ts"].astype(np.int64)
        hold = t["hold_ns"].astype(np.int64)
        end = start + hold
        zones, callers = self._zone_labels(t["zone"]), t["caller"].tolist()
        pids, cpus = t["pid"].tolist(), t["cpu"].tolist()
        counts = t["count"].tolist() if "count" in t else None
        released = self.flows.released(t["cpu"], t["ts"] + t["hold_ns"].astype(np.uint64), hold)

        def emit(lane: _Lane, s: int, e: int, r: int) -> None:
            label = zones[r]
            args = [("caller", self.caller(callers[r])), ("zone", label), ("task", f"{self.comm(pids[r])}-{pids[r]}")]
            if counts is not None and counts[r] >= 0:
                args.append(("batch", int(counts[r])))
            held = self.zone(label)[1]
            self.w.begin(lane.uuid, s, f"hold {label}", args, counters=((held, 1),))
            out = released.get(r, ())
            lane.stack.append((e, tuple(out), (), ((held, 0),)))
            self.stats.holds += 1
            self.stats.flows += len(out)

        return (start, end, np.asarray(cpus, np.int64), np.full(n, _HOLD, np.int8), np.arange(n)), emit

    def _instants(self, obs: Observations) -> None:
        t = obs.contended
        zones = self._zone_labels(t["zone"])
        for ts, cpu, pid, caller, label in zip(t["ts"].tolist(), t["cpu"].tolist(), t["pid"].tolist(),
                                               t["caller"].tolist(), zones):
            self.zone(label)
            self.w.instant(self.cpu_lanes(cpu)[0].uuid, ts, f"contended {label}",
                           [("caller", self.caller(caller)), ("zone", label), ("task", f"{self.comm(pid)}-{pid}")])
            self.stats.instants += 1

    def finish(self) -> PerfettoExport:
        """Close every open slice, write the CPUs-waiting counters, flush."""
        for lanes in self.lanes.values():
            for lane in lanes:
                self.pop(lane, None)
        for label, parts in self.waiting.items():
            self._waiting_counter(self.zone(label)[0], np.concatenate(parts))
        self.w.flush()
        self.stats.packets = self.w.packets
        self.stats.cpus.sort()
        return self.stats

    def _waiting_counter(self, track: int, spans: np.ndarray) -> None:
        """The number of CPUs inside a wait of the zone, at every time it changes (a sweep over the waits)."""
        times = np.concatenate([spans[:, 0], spans[:, 1]])
        delta = np.concatenate([np.ones(len(spans), np.int64), -np.ones(len(spans), np.int64)])
        order = np.argsort(times, kind="stable")
        times, value = times[order], np.cumsum(delta[order])
        last = np.r_[times[1:] != times[:-1], True]  # the value after every change at one time
        times, value = times[last], value[last]
        keep = np.r_[True, value[1:] != value[:-1]]
        for ts, v in zip(times[keep].tolist(), value[keep].tolist()):
            self.w.counter(track, ts, v)


def _abi_key(result: AnalysisResult, path: str) -> str:
    """The ABI the analysis read (the adapter whose name the capabilities carry)."""
    for cls in ADAPTERS:
        if cls.name == result.capabilities.abi:
            return cls.key
    raise ZlperfError(f"{path}: no zone-lock events to export ({result.capabilities.abi}); record with "
                      "`zlperf record --profile hold-time` (patched kernels) or `--profile stock`")


def export_perfetto(path: str, out: str, args: argparse.Namespace) -> int:
    """Write the Perfetto trace of recording ``path`` to ``out`` (the ``zlperf export --perfetto`` command)."""
    pb = require("perfetto.protos.perfetto.trace.perfetto_trace_pb2", "perfetto")
    builder = require("perfetto.trace_builder.proto_builder", "perfetto")
    from zlperf.commands.report import analysis_options
    from zlperf.readers import open_trace
    from zlperf.safeio import check_output, open_atomic

    check_output(out, "Perfetto trace")
    options = analysis_options(args)
    started = time.monotonic()
    with open_trace(path, reader=getattr(args, "reader", "auto"), kallsyms=getattr(args, "kallsyms", None)) as reader:
        analyzer = Analyzer(reader.info, options)
        for chunk in reader.chunks():
            analyzer.feed(chunk)
        result = analyzer.result()
        abi = _abi_key(result, path)
        stream = ObservationStream(reader, abi, options)
        with open_atomic(out, "Perfetto trace", text=False) as fh:
            exporter = _Exporter(PacketWriter(fh, pb, builder.TraceProtoBuilder), reader.info, result, analyzer,
                                 stream, abi)
            for obs in stream:
                exporter.add(obs)
            stats = exporter.finish()
    for warning in result.warnings:
        print(f"zlperf: warning: {path}: {warning}", file=sys.stderr)
    extra = f", {stats.callstacks} with callstacks" if stats.callstacks else ""
    if stats.instants:
        extra += f", {stats.instants} contended events (no wait measured)"
    if stats.overlapping:
        extra += f", {stats.overlapping} on overlap tracks"
    print(f"zlperf: wrote {out}: {stats.waits} wait slices{extra}, {stats.holds} hold slices, {stats.flows} "
          f"holder->waiter flows, {len(stats.cpus)} CPU tracks in {time.monotonic() - started:.1f} s; open it at "
          "https://ui.perfetto.dev (\"Open trace file\")", file=sys.stderr)
    return 0
