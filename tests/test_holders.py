"""Holder attribution ("who made them wait") against an independent reading of trace-cmd / perf script text,
and on crafted sequences that pin each rule."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import holders_truth
from conftest import FULL_DAT, FULL_PERF_DATA, FULL_PERF_KALLSYMS, FULL_V6_DAT, MINIMAL_DAT, WAIT_DAT, requires_trace_cmd
from zlperf.analysis import AnalysisOptions, Analyzer, analyze
from zlperf.analysis.holders import NO_ACQUISITION, NOT_TRACED
from zlperf.events import Chunk, EventBatch, TraceInfo
from zlperf.readers import open_trace
from zlperf.report import build_document


def report(path, **kw) -> dict:
    with open_trace(str(path), **kw) as reader:
        return build_document(analyze(reader, AnalysisOptions(top=20)))


def _handoffs(doc: dict) -> dict:
    return {(x["waiter_caller"], x["holder_caller"]): (x["waits"], x["wait_ns_sum"]) for x in doc["handoffs"]}


@requires_trace_cmd
@pytest.mark.parametrize("path", [FULL_DAT, FULL_V6_DAT], ids=lambda p: p.name)
def test_handoffs_equal_trace_cmd_text(path):
    doc = report(path)
    want = holders_truth.attribute(holders_truth.from_trace_cmd(path))
    assert _handoffs(doc) == want["handoffs"]
    assert doc["holders"]["waits"] == want["waits"] == doc["totals"]["contended"]
    assert doc["holders"]["not_traced"] == want["not_traced"] > 0
    assert sum(x["waits"] for x in doc["handoffs"]) == doc["holders"]["waits"]
    # The holder of each worst wait: the same release (task, CPU, time) and the same acquisition.
    for w in doc["top_waits"]:
        rel = want["holder_of"].get((w["ts_ns"], w["cpu"]))
        h = w["holder"]
        if rel is None:
            assert h["caller"] == NOT_TRACED
            continue
        release, acquisition = rel
        assert (h["release_ts_ns"], h["cpu"], h["pid"]) == (release.ts, release.cpu, release.pid)
        assert h["caller"] == acquisition.caller and h["count"] == acquisition.count
        assert h["hold_ns"] == release.ts - acquisition.ts


def test_handoffs_of_perf_data_equal_perf_script_text():
    doc = report(FULL_PERF_DATA, kallsyms=str(FULL_PERF_KALLSYMS))
    want = holders_truth.attribute(holders_truth.from_perf_script(FULL_PERF_DATA, FULL_PERF_KALLSYMS))
    assert _handoffs(doc) == want["handoffs"]
    assert doc["holders"]["not_traced"] == want["not_traced"]


@pytest.mark.parametrize("path", [WAIT_DAT, MINIMAL_DAT], ids=lambda p: p.name)
def test_recordings_without_releases_cannot_tell(path):
    doc = report(path)
    assert doc["holders"] is None and doc["handoffs"] == [] and doc["can_show"]["holders"] is False
    assert all("holder" not in w for w in doc["top_waits"])


def test_window_keeps_holders_that_released_before_it():
    """--since cuts waits, not the releases their holders made just before the window."""
    full = report(FULL_DAT)
    first = min(w["ts_ns"] for w in full["top_waits"])
    with open_trace(str(FULL_DAT)) as reader:
        cut = build_document(analyze(reader, AnalysisOptions(since_ns=first, top=20)))
    worst = {(w["ts_ns"], w["cpu"]): w["holder"] for w in full["top_waits"]}
    for w in cut["top_waits"]:
        assert w["holder"] == worst.get((w["ts_ns"], w["cpu"]), w["holder"])


# -- crafted sequences: one rule each --------------------------------------------------------------------

A, B, C = 0xFFFFFFFF81000010, 0xFFFFFFFF81000020, 0xFFFFFFFF81000030  # three lock callers
_FIELDS = ("node_id", "name", "count", "caller")


def _analyze(events: list[tuple]) -> dict:
    """events: (ts, cpu, "L"|"U", caller, contended, wait_ns) in file order, all zone 0:Normal."""
    batches: dict[str, list] = {"kmem:mm_zone_locked": [], "kmem:mm_zone_lock_unlock": []}
    for seq, (ts, cpu, kind, caller, contended, wait) in enumerate(events):
        name = "kmem:mm_zone_locked" if kind == "L" else "kmem:mm_zone_lock_unlock"
        batches[name].append((ts, cpu, 100 + cpu, seq, caller, contended, wait))
    chunk = Chunk()
    for name, rows in batches.items():
        ts, cpu, pid, seq, caller, contended, wait = (np.array(c) for c in zip(*rows))
        n = len(rows)
        names = np.empty(n, dtype=object)
        names[:] = "Normal"
        fields = {"node_id": np.zeros(n, np.int32), "name": names, "count": np.full(n, 8, np.int32),
                  "caller": caller.astype(np.uint64)}
        if name == "kmem:mm_zone_locked":
            fields.update(contended=contended.astype(np.uint8), wait_ns=wait.astype(np.uint64))
        chunk.batches[name] = EventBatch(name, ts.astype(np.uint64), cpu.astype(np.int32), pid.astype(np.int32),
                                         seq.astype(np.int64), fields)
    an = Analyzer(TraceInfo(path="crafted", format="crafted", cpus=4), AnalysisOptions(top=10))
    an.feed(chunk)
    return build_document(an.result())


def _holder_of(doc: dict, ts: int) -> dict:
    return next(w["holder"] for w in doc["top_waits"] if w["ts_ns"] == ts)


def test_rule_hold_on_another_cpu_overlapping_the_wait():
    doc = _analyze([(100, 0, "L", A, 0, 0), (150, 1, "L", B, 1, 60), (149, 0, "U", A, 0, 0), (200, 1, "U", B, 0, 0)])
    h = _holder_of(doc, 150)
    assert (h["caller"], h["cpu"], h["release_ts_ns"], h["hold_ns"]) == ("0xffffffff81000010", 0, 149, 49)
    assert doc["holders"]["not_traced"] == 0


def test_rule_no_release_inside_the_wait_is_not_traced():
    # CPU0 released at 100, the wait on CPU1 began at 150 - 40 = 110: nothing traced held it meanwhile.
    doc = _analyze([(50, 0, "L", A, 0, 0), (100, 0, "U", A, 0, 0), (150, 1, "L", B, 1, 40), (160, 1, "U", B, 0, 0)])
    assert _holder_of(doc, 150)["caller"] == NOT_TRACED
    assert doc["holders"]["not_traced"] == 1


def test_rule_a_release_on_the_waiters_own_cpu_does_not_count():
    # The latest release before t is on the waiter's CPU (1); the one before it, on CPU 2, is the holder.
    doc = _analyze([(10, 2, "L", C, 0, 0), (90, 2, "U", C, 0, 0), (95, 1, "L", A, 0, 0), (99, 1, "U", A, 0, 0),
                    (100, 1, "L", B, 1, 50), (120, 1, "U", B, 0, 0)])
    h = _holder_of(doc, 100)
    assert h["cpu"] == 2 and h["caller"] == "0xffffffff81000030"


def test_rule_same_timestamp_releases_keep_file_order():
    # Releases at the same time on CPUs 0 and 2: file order puts CPU 2 last, so it is the holder.
    doc = _analyze([(10, 0, "L", A, 0, 0), (10, 2, "L", C, 0, 0), (50, 0, "U", A, 0, 0), (50, 2, "U", C, 0, 0),
                    (60, 1, "L", B, 1, 30), (70, 1, "U", B, 0, 0)])
    assert _holder_of(doc, 60)["cpu"] == 2


def test_rule_an_unmatched_release_has_no_acquisition_seen():
    doc = _analyze([(40, 0, "U", A, 0, 0), (50, 1, "L", B, 1, 30), (60, 1, "U", B, 0, 0)])
    h = _holder_of(doc, 50)
    assert h["caller"] == NO_ACQUISITION and h["hold_ns"] is None and h["cpu"] == 0
    assert doc["holders"]["no_acquisition_seen"] == 1


def test_convoy_chain_of_three():
    # CPU0 holds; CPU1 waits behind it; CPU2 waits behind CPU1 (which waited): a hand-off chain of 3.
    doc = _analyze([(10, 0, "L", A, 0, 0), (100, 0, "U", A, 0, 0),
                    (101, 1, "L", B, 1, 80), (200, 1, "U", B, 0, 0),
                    (201, 2, "L", C, 1, 150), (300, 2, "U", C, 0, 0),
                    (301, 3, "L", A, 1, 90), (400, 3, "U", A, 0, 0)])
    h = doc["holders"]
    assert h["waits"] == 3 and h["handed_off"] == 2 and h["not_traced"] == 0
    assert h["convoys"] == [{"length": 3, "chains": 1}]
    assert _holder_of(doc, 201)["waited"] is True and _holder_of(doc, 101)["waited"] is False


def test_cli_by_holder_and_csv():
    run = lambda *a: subprocess.run([sys.executable, "-m", "zlperf", "report", "--example", *a], capture_output=True,
                                    text=True, check=True).stdout
    text = run("--by", "holder")
    assert "== by holder" in text and "== who made them wait" in text and NOT_TRACED in text
    rows = run("--csv", "--by", "holder").splitlines()
    assert rows[0] == "waiter_caller,holder_caller,waits,wait_ns_sum"
    doc = json.loads(run("--json"))
    assert len(rows) - 1 == len(doc["handoffs"])
    assert sum(int(r.rsplit(",", 2)[1]) for r in rows[1:]) == doc["holders"]["waits"]


_U64 = st.integers(0, (1 << 64) - 1)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_packed_releases_round_trip_exactly(data):
    """Kept releases are narrowed (frame of reference, times as differences) and compressed: any values,
    in any order, come back bit for bit, whole or a few rows."""
    from zlperf.analysis.holders import _KEPT, RELEASE_COLUMNS, _pack, _unpack

    n = data.draw(st.integers(1, 300))
    part = {}
    for k in _KEPT:
        dt = np.dtype(RELEASE_COLUMNS[k])
        small = data.draw(st.booleans())  # real columns: a few values close together
        raw = data.draw(st.lists(st.integers(0, 300) if small else _U64, min_size=n, max_size=n))
        part[k] = np.array(raw, dtype=np.uint64).astype(dt)
    packed = _pack(part)
    whole = _unpack(packed, n)
    for k in _KEPT:
        assert whole[k].dtype == part[k].dtype and np.array_equal(whole[k], part[k]), k
    rows = np.array(sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1))), dtype=np.int64)
    some = _unpack(packed, n, rows=rows)
    for k in _KEPT:
        assert np.array_equal(some[k], part[k][rows]), k
