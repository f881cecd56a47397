"""The analysis core against independent truth computed from `trace-cmd report` text (tests/truth.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import truth
from conftest import FULL_DAT, FULL_V6_DAT, MINIMAL_DAT, STOCK_DAT, WAIT_DAT, requires_trace_cmd
from zlperf.analysis import AnalysisOptions, Analyzer, analyze
from zlperf.events import MISSED_EVENTS, Chunk, EventBatch
from zlperf.readers import open_trace
from zlperf.report import build_document

pytestmark = requires_trace_cmd

ZONE_LOCK_FIXTURES = [FULL_DAT, FULL_V6_DAT, WAIT_DAT, MINIMAL_DAT]
STAT_KEYS = ("count", "sum", "min", "max", "p50", "p90", "p99")


def report(path, **opts) -> dict:
    reader = open_trace(str(path))
    try:
        return build_document(analyze(reader, AnalysisOptions(**opts)))
    finally:
        reader.close()


def _stats(st):
    return None if st is None else {k: st[k] for k in STAT_KEYS}


@pytest.fixture(scope="module", params=ZONE_LOCK_FIXTURES, ids=lambda p: p.name)
def pair(request):
    """(zlperf's report, truth from trace-cmd report text) for one fixture."""
    return report(request.param), truth.expected(request.param)


def test_event_counts_and_duration_match_trace_cmd(pair):
    doc, exp = pair
    assert doc["events"] == exp["events"]
    assert doc["duration_ns"] == exp["duration_ns"]


def test_zone_numbers_match_trace_cmd(pair):
    doc, exp = pair
    got = {z["label"]: z for z in doc["zones"]}
    assert set(got) == set(exp["zones"])
    for label, e in exp["zones"].items():
        z = got[label]
        for key in ("contended_events", "acquisitions", "contended", "unmatched_unlocks"):
            assert z[key] == e[key], (label, key)
        assert _stats(z["wait_ns"]) == e["wait_ns"], label
        assert _stats(z["hold_ns"]) == e["hold_ns"], label


def test_caller_numbers_match_trace_cmd(pair):
    doc, exp = pair
    got = {c["caller"]: c for c in doc["callers"] if c["role"] == "lock"}
    assert set(got) == set(exp["callers"])
    for caller, e in exp["callers"].items():
        c = got[caller]
        assert c["contended_events"] == e["contended_events"]
        assert c["acquisitions"] == e["acquisitions"]
        assert _stats(c["wait_ns"]) == e["wait_ns"]
        assert _stats(c["hold_ns"]) == e["hold_ns"]


def test_unreleased_matches_trace_cmd(pair):
    doc, exp = pair
    if doc["can_show"]["holds"]:
        assert doc["totals"]["unreleased"] == exp["unreleased"]


@pytest.mark.parametrize("path,profile,nulls", [
    (MINIMAL_DAT, "minimal", ("acquisitions", "wait_ns", "hold_ns", "unmatched_unlocks")),
    (WAIT_DAT, "wait-time", ("hold_ns", "unmatched_unlocks")),
    (FULL_DAT, "hold-time", ()),
], ids=["minimal", "wait", "full"])
def test_profile_detected_and_unknowns_are_null(path, profile, nulls):
    doc = report(path)
    assert doc["schema"] == "zlperf.report/1"
    assert doc["profile"] == profile
    for z in doc["zones"]:
        for key in nulls:
            assert z[key] is None, key
        for key in {"acquisitions", "wait_ns", "hold_ns", "unmatched_unlocks"} - set(nulls):
            assert z[key] is not None, key
    if nulls:
        assert doc["cannot_show"], "a partial profile must say what it cannot show"


def test_percentiles_are_nearest_rank_exact():
    t = report(FULL_DAT)["totals"]["hold_ns"]
    all_holds = sorted(truth_values(FULL_DAT)["hold"])
    for label, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
        assert t[label] == truth.nearest_rank(all_holds, p), label
    assert t["count"] == len(all_holds) and t["max"] == all_holds[-1] and t["sum"] == sum(all_holds)
    assert sum(t["hist_log2"]) == len(all_holds)


def truth_values(path) -> dict:
    """All hold values computed by the truth module's pairing (flattened over zones)."""
    t = truth.parse(path)
    last = {}
    holds = []
    for item in t.stream:
        if isinstance(item, tuple):
            last[item[1]] = None
            continue
        if item.event == "mm_zone_locked":
            last[item.cpu] = item
        elif item.event == "mm_zone_lock_unlock":
            prev = last.get(item.cpu)
            if prev is not None and prev.event == "mm_zone_locked" and prev.f["zone"] == item.f["zone"] \
                    and prev.f["node"] == item.f["node"]:
                holds.append(item.ts - prev.ts)
            last[item.cpu] = item
    return {"hold": holds}


def _all_chunks(path) -> list[Chunk]:
    reader = open_trace(str(path))
    try:
        return list(reader.chunks())
    finally:
        reader.close()


def _rechunk(chunks: list[Chunk], pieces: int) -> list[Chunk]:
    """The same events cut into ``pieces`` chunks by seq (keeps the per-CPU order contract)."""
    merged: dict[str, list[EventBatch]] = {}
    for c in chunks:
        for name, b in c.batches.items():
            merged.setdefault(name, []).append(b)
    batches = {name: EventBatch(name, *(np.concatenate([getattr(b, a) for b in bs])
                                       for a in ("ts", "cpu", "pid", "seq")),
                                {f: np.concatenate([b.fields[f] for b in bs]) for f in bs[0].fields})
               for name, bs in merged.items()}
    seqs = np.concatenate([b.seq for b in batches.values()])
    edges = np.quantile(seqs, np.linspace(0, 1, pieces + 1)[1:-1]).astype(np.int64)
    out = []
    lo = np.iinfo(np.int64).min
    for hi in list(edges) + [np.iinfo(np.int64).max]:
        c = Chunk()
        for name, b in batches.items():
            m = (b.seq > lo) & (b.seq <= hi) if lo != np.iinfo(np.int64).min else (b.seq <= hi)
            c.batches[name] = EventBatch(name, b.ts[m], b.cpu[m], b.pid[m], b.seq[m],
                                         {f: v[m] for f, v in b.fields.items()})
        out.append(c)
        lo = hi
    return out


def _analyze_chunks(path, chunks) -> dict:
    reader = open_trace(str(path))
    try:
        an = Analyzer(reader.info)
        for c in chunks:
            an.feed(c)
        return build_document(an.result())
    finally:
        reader.close()


def _comparable(doc: dict) -> dict:
    doc = json.loads(json.dumps(doc))
    doc.pop("timeline")
    for dim in ("zones", "callers"):
        for e in doc[dim]:
            e.pop("slices", None)
    return doc


def test_streaming_gives_the_same_answer_whatever_the_chunking():
    chunks = _all_chunks(FULL_DAT)
    whole = _comparable(_analyze_chunks(FULL_DAT, chunks))
    for pieces in (1, 7, 50):
        assert _comparable(_analyze_chunks(FULL_DAT, _rechunk(chunks, pieces))) == whole, pieces


def test_missed_events_break_pairs_instead_of_inventing_holds():
    """A gap flagged on a CPU: the pair around it is counted apart, never turned into a hold."""
    chunks = _rechunk(_all_chunks(FULL_DAT), 1)
    c = chunks[0]
    locked = c.batches["kmem:mm_zone_locked"]
    cpu0 = np.flatnonzero(locked.cpu == 0)
    target = cpu0[len(cpu0) // 2]
    gap_seq = locked.seq[target] + 0.5  # between the locked event and its unlock
    # seq is integer: renumber so there is room for the gap marker.
    for b in c.batches.values():
        b.seq = b.seq * 2
    gap = EventBatch(MISSED_EVENTS, np.array([locked.ts[target]], np.uint64), np.array([0], np.int32),
                     np.array([-1], np.int32), np.array([int(gap_seq * 2)], np.int64),
                     {"count": np.array([3], np.int64)})
    c.batches[MISSED_EVENTS] = gap
    base = _analyze_chunks(FULL_DAT, _rechunk(_all_chunks(FULL_DAT), 1))
    doc = _analyze_chunks(FULL_DAT, [c])
    assert doc["missed_events"] == 3
    assert doc["totals"]["broken_by_missed"] == 2  # the locked before the gap and the unlock after it
    assert doc["totals"]["hold_ns"]["count"] == base["totals"]["hold_ns"]["count"] - 1
    assert doc["totals"]["unmatched_unlocks"] == base["totals"]["unmatched_unlocks"]


def test_dropped_unlocks_become_unreleased_not_holds():
    chunks = _rechunk(_all_chunks(FULL_DAT), 1)
    c = chunks[0]
    u = c.batches["kmem:mm_zone_lock_unlock"]
    keep = u.cpu != 3
    removed = int((~keep).sum())
    c.batches["kmem:mm_zone_lock_unlock"] = EventBatch(u.name, u.ts[keep], u.cpu[keep], u.pid[keep], u.seq[keep],
                                                       {f: v[keep] for f, v in u.fields.items()})
    doc = _analyze_chunks(FULL_DAT, [c])
    base = report(FULL_DAT)
    assert doc["totals"]["hold_ns"]["count"] == base["totals"]["hold_ns"]["count"] - removed
    assert doc["totals"]["unreleased"] == base["totals"]["unreleased"] + removed


def test_time_window_and_zone_filter():
    full = report(FULL_DAT)
    zone = report(FULL_DAT, zone="1:Normal")
    assert [z["label"] for z in zone["zones"]] == ["1:Normal"]
    want = next(z for z in full["zones"] if z["label"] == "1:Normal")
    assert zone["zones"][0]["acquisitions"] == want["acquisitions"]
    assert zone["zones"][0]["hold_ns"]["count"] == want["hold_ns"]["count"]
    # A window: count locked events in it straight from the truth stream.
    t = truth.parse(FULL_DAT)
    lo, hi = t.first_ts + 1_000_000_000, t.first_ts + 2_000_000_000
    n = sum(1 for e in t.stream if not isinstance(e, tuple) and e.event == "mm_zone_locked" and lo <= e.ts <= hi)
    win = report(FULL_DAT, since_ns=lo, until_ns=hi)
    assert win["totals"]["acquisitions"] == n
    assert win["duration_ns"] == hi - lo


def test_stock_fixture_attributes_no_waits_to_zone_lock():
    """stock-threads.dat holds only rwsem/mutex waits (PROVENANCE.md): nothing is a zone lock."""
    doc = report(STOCK_DAT)
    assert doc["profile"] == "stock"
    assert doc["zones"] == []
    assert doc["totals"]["contended_events"] == 0
    begins = doc["events"]["lock:contention_begin"]
    assert any(f"{begins} waits" in n or "not attributed" in n for n in doc["notes"])
    assert doc["totals"]["acquisitions"] is None and doc["totals"]["hold_ns"] is None


def test_cli_report_example_text_json_csv():
    run = lambda *a: subprocess.run([sys.executable, "-m", "zlperf", "report", *a], capture_output=True, text=True)
    text = run("--example")
    assert text.returncode == 0, text.stderr
    for needle in ("profile:   hold-time", "verdict:", "held", "== by zone", "== by caller", "free_one_page+0x4e", "nsecs",
                   "== worst", "hold time by batch size"):
        assert needle in text.stdout, needle
    js = run("--example", "--json")
    doc = json.loads(js.stdout)
    assert doc["events"]["kmem:mm_zone_locked"] == truth.expected(FULL_DAT)["events"]["kmem:mm_zone_locked"]
    csv_out = run("--example", "--csv", "--by", "caller")
    lines = csv_out.stdout.splitlines()
    assert lines[0].startswith("caller,addr,role,contended_events")
    assert len(lines) == 1 + len(doc["callers"])
    bad = run("/nonexistent.dat")
    assert bad.returncode != 0 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr


def test_contended_stacks_and_folded_output(tmp_path):
    """stock-threads.dat has kernel stacks: `--folded` writes them root-first with counts (flamegraph.pl format)."""
    out = tmp_path / "stacks.folded"
    # The kmem fixtures carry no stacks; the stock one does, but none of its waits is a zone lock.
    proc = subprocess.run([sys.executable, "-m", "zlperf", "report", str(FULL_DAT), "--folded", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "no stacks recorded" in proc.stderr
    assert out.read_text() == ""


def test_folded_lines_are_root_first():
    from zlperf.render.text import render_folded

    doc = {"contended_stacks": [{"count": 3, "frames": ["_raw_spin_lock+0x1", "free_one_page+0x4e", "main+0x9"]}]}
    assert render_folded(doc) == "main;free_one_page;_raw_spin_lock 3\n"
