"""`zlperf export --perfetto`: the file read back with the perfetto package's own protobuf classes and
checked against independent numbers: `trace-cmd report` / `perf script` text (waits, holds, who released
whom) and the report JSON (counts, sums).

The reader below resolves interned strings and callstacks and rebuilds slices per track the way a
trace viewer does (events sorted by time, file order kept on ties, BEGIN pushes, END pops), so a slice
that crossed another on its track would show up as a wrong duration or an END without a BEGIN.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import holders_truth
from conftest import (FULL_DAT, FULL_PERF_DATA, FULL_PERF_KALLSYMS, MINIMAL_DAT, REPO, STOCK_DAT, WAIT_DAT, DATA,
                      have_tool, is_root, requires_perf, requires_trace_cmd)

pb = pytest.importorskip("perfetto.protos.perfetto.trace.perfetto_trace_pb2",
                         reason="the perfetto package is not installed (pip install 'zlperf[perfetto]')")
SERIES_DAT = DATA / "series.dat"


def zlperf(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "zlperf", *args], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def report(path: Path, *extra: str) -> dict:
    return json.loads(zlperf("report", str(path), "--json", *extra).stdout)


# -- reading a Perfetto trace with the package's protobuf classes -------------------------------------------
@dataclass
class Slice:
    track: int
    name: str
    ts: int
    dur: int
    args: dict
    flows_out: list
    flows_in: list
    callstack: list | None = None  # function names, outermost first
    weight: float | None = None


@dataclass
class Trace:
    tracks: dict = field(default_factory=dict)  # uuid -> TrackDescriptor
    order: list = field(default_factory=list)  # uuids in file order
    slices: list = field(default_factory=list)
    instants: list = field(default_factory=list)
    counters: dict = field(default_factory=lambda: defaultdict(list))  # uuid -> [(ts, value)] in time order

    def cpu_of(self, track: int) -> int:
        """The CPU of a slice's track (an overlap track's parent is the CPU track)."""
        d = self.tracks[track]
        while not d.name.startswith("cpu ") or " overlap " in d.name:
            d = self.tracks[d.parent_uuid]
        return int(d.name.split()[1])

    def named(self, prefix: str) -> list:
        return [s for s in self.slices if s.name.startswith(prefix)]


def read_pftrace(path: Path) -> Trace:
    trace = pb.Trace()
    trace.ParseFromString(path.read_bytes())
    interned: dict = defaultdict(dict)
    out = Trace()
    events = []
    for i, p in enumerate(trace.packet):
        if p.HasField("interned_data"):
            d = p.interned_data
            for table in ("event_names", "debug_annotation_names"):
                interned[table].update({e.iid: e.name for e in getattr(d, table)})
            for table in ("debug_annotation_string_values", "function_names"):
                interned[table].update({e.iid: e.str.decode() for e in getattr(d, table)})
            interned["frames"].update({f.iid: f.function_name_id for f in d.frames})
            interned["callstacks"].update({c.iid: list(c.frame_ids) for c in d.callstacks})
        if p.HasField("track_descriptor"):
            out.tracks[p.track_descriptor.uuid] = p.track_descriptor
            out.order.append(p.track_descriptor.uuid)
        if p.HasField("track_event"):
            assert p.trusted_packet_sequence_id and p.sequence_flags & 2, "interned ids need the sequence state"
            events.append((p.timestamp, i, p.track_event))
    events.sort(key=lambda e: (e[0], e[1]))
    open_slices: dict = defaultdict(list)
    for ts, _, e in events:
        for uuid, value in zip(e.extra_counter_track_uuids, e.extra_counter_values):
            out.counters[uuid].append((ts, value))
        if e.type == pb.TrackEvent.TYPE_COUNTER:
            out.counters[e.track_uuid].append((ts, e.counter_value))
            continue
        name = interned["event_names"].get(e.name_iid)
        args = {interned["debug_annotation_names"][a.name_iid]:
                interned["debug_annotation_string_values"][a.string_value_iid] if a.HasField("string_value_iid")
                else a.int_value for a in e.debug_annotations}
        if e.type == pb.TrackEvent.TYPE_INSTANT:
            out.instants.append((e.track_uuid, ts, name, args))
        elif e.type == pb.TrackEvent.TYPE_SLICE_BEGIN:
            stack = None
            if e.HasField("callstack_iid"):
                stack = [interned["function_names"][interned["frames"][f]]
                         for f in interned["callstacks"][e.callstack_iid]]
            s = Slice(e.track_uuid, name, ts, -1, args, [], [], stack,
                      e.callstack_weight if e.HasField("callstack_weight") else None)
            open_slices[e.track_uuid].append(s)
            out.slices.append(s)
        elif e.type == pb.TrackEvent.TYPE_SLICE_END:
            assert open_slices[e.track_uuid], f"END without BEGIN on track {e.track_uuid} at {ts}"
            s = open_slices[e.track_uuid].pop()
            s.dur = ts - s.ts
            s.flows_out.extend(e.flow_ids)
            s.flows_in.extend(e.terminating_flow_ids)
    assert not any(open_slices.values()), "slices left open at the end"
    return out


def export(path: Path, out: Path, *extra: str) -> Trace:
    proc = zlperf("export", str(path), "--perfetto", str(out), *extra)
    assert "ui.perfetto.dev" in proc.stderr
    return read_pftrace(out)


def flows(t: Trace) -> list[tuple[Slice, Slice]]:
    """(source, destination) slice of every flow id; each id joins exactly one hold to one wait."""
    src = {i: s for s in t.slices for i in s.flows_out}
    dst = {i: s for s in t.slices for i in s.flows_in}
    assert sum(len(s.flows_out) for s in t.slices) == len(src) and sum(len(s.flows_in) for s in t.slices) == len(dst)
    assert set(src) == set(dst), "a flow with one end only"
    pairs = [(src[i], dst[i]) for i in sorted(src)]
    assert all(a.name.startswith("hold ") and b.name.startswith("wait ") for a, b in pairs)
    return pairs


def check_cpu_tracks(t: Trace, cpus: set) -> None:
    root = next(u for u in t.order if t.tracks[u].name == "zone->lock")
    assert t.tracks[root].child_ordering == pb.TrackDescriptor.EXPLICIT
    cpu_tracks = [t.tracks[u] for u in t.order if t.tracks[u].name.startswith("cpu ") and " overlap " not in
                  t.tracks[u].name]
    numbers = [int(d.name.split()[1]) for d in cpu_tracks]
    assert numbers == sorted(numbers) and set(numbers) >= cpus
    assert all(d.parent_uuid == root and d.sibling_order_rank == n for d, n in zip(cpu_tracks, numbers))


# -- independent expectations from the reference tools' text ------------------------------------------------
def truth_of(recs: list) -> dict:
    """Waits (end ts, cpu, wait) and holds (start, cpu, dur) from the printed stream, by the obvious loops."""
    waits, holds, last = [], [], {}
    for r in recs:
        if r.event == "gap":
            last[r.cpu] = None
        elif r.event == "locked":
            if r.contended:
                waits.append((r.ts, r.cpu, r.wait))
            last[r.cpu] = r
        else:
            prev = last.get(r.cpu)
            if prev is not None and prev.event == "locked" and prev.zone == r.zone:
                holds.append((prev.ts, r.cpu, r.ts - prev.ts))
            last[r.cpu] = r
    return {"waits": Counter(waits), "holds": Counter(holds)}


def check_against_text(t: Trace, recs: list, doc: dict) -> None:
    want = truth_of(recs)
    waits = Counter((s.ts + s.dur, t.cpu_of(s.track), s.dur) for s in t.named("wait "))
    holds = Counter((s.ts, t.cpu_of(s.track), s.dur) for s in t.named("hold "))
    assert waits == want["waits"] and sum(waits.values()) == doc["totals"]["contended"]
    assert holds == want["holds"] and sum(holds.values()) == doc["totals"]["hold_ns"]["count"]
    # Who released whom: the holder's hold slice (acquisition -> release) to the waiter's wait slice.
    attributed = holders_truth.attribute(recs)
    want_flows = {(ts, cpu, rel.ts, rel.cpu, acq.ts) for (ts, cpu), (rel, acq) in attributed["holder_of"].items()
                  if acq is not None}
    got = [(b.ts + b.dur, t.cpu_of(b.track), a.ts + a.dur, t.cpu_of(a.track), a.ts) for a, b in flows(t)]
    assert len(got) == len(set(got)) and set(got) == want_flows
    h = doc["holders"]
    assert len(got) == h["waits"] - h["not_traced"] - h["no_acquisition_seen"]
    check_cpu_tracks(t, {c["cpu"] for c in doc["cpus"]})
    for s in t.named("wait ") + t.named("hold "):
        assert s.name.split(" ", 1)[1] == s.args["zone"] and {"caller", "task"} <= set(s.args)
    assert all("batch" in s.args for s in t.named("hold "))


def check_counters(t: Trace) -> None:
    """'lock held' is 1 inside every hold of its zone; 'CPUs waiting' steps as the zone's waits begin and end."""
    by_name = {t.tracks[u].name: u for u in t.order}
    for label in {s.args["zone"] for s in t.named("wait ")}:
        spans = sorted((s.ts, s.ts + s.dur) for s in t.named(f"wait {label}"))
        series = t.counters[by_name[f"{label} CPUs waiting"]]
        for start, end in spans[:200]:
            inside = sum(1 for a, b in spans if a <= start < b)  # waits covering this start, by brute force
            value = [v for ts, v in series if ts <= start][-1]
            assert value == inside
        assert max(v for _, v in series) <= len(t.tracks)
    for label in {s.args["zone"] for s in t.named("hold ")}:
        series = t.counters[by_name[f"{label} lock held"]]
        assert {v for _, v in series} <= {0, 1} and len(series) == 2 * len(t.named(f"hold {label}"))


# -- tests ---------------------------------------------------------------------------------------------------
@requires_trace_cmd
def test_example_slices_and_flows_equal_trace_cmd_text(tmp_path):
    t = export(FULL_DAT, tmp_path / "x.pftrace")
    check_against_text(t, holders_truth.from_trace_cmd(FULL_DAT), report(FULL_DAT))
    check_counters(t)
    assert not any(" overlap " in d.name for d in t.tracks.values())  # waits and holds follow each other


def test_example_via_embedded_flag(tmp_path):
    out = tmp_path / "x.pftrace"
    zlperf("export", "--example", "--perfetto", str(out))
    doc = json.loads(zlperf("report", "--example", "--json").stdout)
    t = read_pftrace(out)
    assert len(t.named("wait ")) == doc["totals"]["contended"] and len(t.named("hold ")) == doc["totals"]["hold_ns"]["count"]


@requires_perf
def test_perf_data_equals_perf_script_text(tmp_path):
    t = export(FULL_PERF_DATA, tmp_path / "p.pftrace", "--kallsyms", str(FULL_PERF_KALLSYMS))
    doc = report(FULL_PERF_DATA, "--kallsyms", str(FULL_PERF_KALLSYMS))
    check_against_text(t, holders_truth.from_perf_script(FULL_PERF_DATA, FULL_PERF_KALLSYMS), doc)


def test_zone_lock_series_abi(tmp_path):
    """The zone_lock:* series: every acquisition's start->acquire is a wait; counts and sums as the report."""
    t = export(SERIES_DAT, tmp_path / "s.pftrace", "--abi", "series")
    doc = report(SERIES_DAT, "--abi", "series")
    for kind, key in (("wait ", "wait_ns"), ("hold ", "hold_ns")):
        durs = [s.dur for s in t.named(kind)]
        st = doc["totals"][key]
        assert (len(durs), sum(durs), min(durs), max(durs)) == (st["count"], st["sum"], st["min"], st["max"])
    h = doc["holders"]
    assert len(flows(t)) == h["waits"] - h["not_traced"] - h["no_acquisition_seen"] > 0
    check_cpu_tracks(t, {c["cpu"] for c in doc["cpus"]})
    assert all(s.args["zone"].startswith("zone@0x") for s in t.named("hold "))


@requires_trace_cmd
def test_wait_time_and_minimal_recordings(tmp_path):
    t = export(WAIT_DAT, tmp_path / "w.pftrace")
    want = truth_of(holders_truth.from_trace_cmd(WAIT_DAT))
    assert Counter((s.ts + s.dur, t.cpu_of(s.track), s.dur) for s in t.named("wait ")) == want["waits"]
    assert not t.named("hold ") and not flows(t)
    t = export(MINIMAL_DAT, tmp_path / "m.pftrace")
    assert not t.slices and len(t.instants) == report(MINIMAL_DAT)["totals"]["contended_events"] == 199


def _stock_waits_from_trace_cmd(path: Path, frames: set) -> Counter:
    """(cpu, begin ts, wait, stack outermost first) of the waits on locks whose first non-locking frame is in
    ``frames`` (then every wait on that lock counts), from `trace-cmd report` text."""
    from zlperf.analysis.stacks import is_locking_frame  # the documented rule, not the code under test

    line = re.compile(r"\[(\d+)\]\s+(\d+)\.(\d+):\s+(\w+):\s+(\S+)")
    text = subprocess.run(["trace-cmd", "report", "-t", str(path)], capture_output=True, text=True, check=True).stdout
    waits, opened, last, current = [], defaultdict(list), {}, None
    for raw in text.splitlines():
        if raw.startswith("=>"):
            if current is not None:
                current.append(raw.split()[1])
            continue
        m = line.search(raw)
        if not m:
            continue
        cpu, event, arg = int(m.group(1)), m.group(4), m.group(5)
        ts = int(m.group(2)) * 10**9 + int(m.group(3).ljust(9, "0"))
        current = None
        if event == "kernel_stack":  # the stack of the event printed just before it on this CPU
            entry = last.pop(cpu, None)
            if entry is not None:
                current = entry[1] = []
            continue
        last[cpu] = None
        if event == "contention_begin":
            last[cpu] = [ts, None]
            opened[(cpu, arg)].append(last[cpu])
        elif event == "contention_end" and opened[(cpu, arg)]:
            begin, stack = opened[(cpu, arg)].pop()  # the latest open wait on this lock and CPU
            waits.append((arg, cpu, begin, ts - begin, stack or []))
    chosen = {a for a, _, _, _, st in waits if next((f for f in st if not is_locking_frame(f)), None) in frames}
    return Counter((c, b, w, tuple(reversed(st))) for a, c, b, w, st in waits if a in chosen)


@requires_trace_cmd
def test_stock_waits_carry_their_kernel_stacks(tmp_path):
    """Stock kernels: each wait slice carries its lock:contention_begin stack (a wait-weighted flame graph).

    The stock fixture's waits are on mm locks (no zone->lock waiter queued in that guest), so a recipe names
    those callers as the lock's frames: the export is then the stock path with real stacks. The live test
    below does the same on this machine's own zone->lock waits.
    """
    frames = {"lock_mm_and_find_vma", "vma_expand", "__split_vma"}
    recipe = tmp_path / "mm.yaml"
    recipe.write_text("description: test\nextends: stock\nzone_lock_frames: [" + ", ".join(sorted(frames)) + "]\n")
    t = export(STOCK_DAT, tmp_path / "k.pftrace", "--recipe", str(recipe))
    doc = report(STOCK_DAT, "--recipe", str(recipe))
    waits = t.named("wait ")
    assert len(waits) == doc["totals"]["wait_ns"]["count"] > 0
    assert all(s.callstack and s.weight == s.dur for s in waits)
    got = Counter((t.cpu_of(s.track), s.ts, s.dur, tuple(s.callstack)) for s in waits)
    assert got == _stock_waits_from_trace_cmd(STOCK_DAT, frames)
    assert not t.named("hold ") and not flows(t)


@pytest.mark.live
@pytest.mark.skipif(not (is_root() and have_tool("trace-cmd") and
                         os.path.exists("/sys/kernel/tracing/events/lock/contention_begin")),
                    reason="needs root, trace-cmd and lock:contention_* in tracefs")
def test_stock_live_zone_lock_waits_have_callstacks(tmp_path, pcp_lists_shrunk):
    out = tmp_path / "stock.dat"
    proc = subprocess.run([sys.executable, "-m", "zlperf", "record", "--profile", "stock", "-o", str(out), "--",
                           sys.executable, "-m", "zlperf.workload", "--procs", "2", "--seconds", "3", "--mb", "64"],
                          capture_output=True, text=True, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = report(out)
    t = export(out, tmp_path / "stock.pftrace")
    waits = t.named("wait ")
    assert len(waits) == doc["totals"]["wait_ns"]["count"]
    if not waits:
        pytest.skip("no zone->lock wait in this run")
    from zlperf.analysis.abi.stock_frames import ZONE_LOCK_FRAMES

    assert all(s.callstack and s.weight == s.dur for s in waits)
    got = Counter((t.cpu_of(s.track), s.ts, s.dur, tuple(s.callstack)) for s in waits)
    assert got == _stock_waits_from_trace_cmd(out, set(ZONE_LOCK_FRAMES))


def test_missing_package_is_one_line(tmp_path):
    code = ("import sys; sys.modules['perfetto'] = None; from zlperf.cli import main; "
            f"raise SystemExit(main(['export', '--example', '--perfetto', {str(tmp_path / 'x.pftrace')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "pip install 'zlperf[perfetto]'" in proc.stderr
    assert not (tmp_path / "x.pftrace").exists()


def test_output_through_a_symlink_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text("keep")
    link = tmp_path / "x.pftrace"
    link.symlink_to(target)
    proc = zlperf("export", "--example", "--perfetto", str(link), check=False)
    assert proc.returncode == 2 and "symbolic link" in proc.stderr and target.read_text() == "keep"
