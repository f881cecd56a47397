"""The rival zone_lock:* ABI on a real lab recording, against trace-cmd report text (independent truth)."""

from __future__ import annotations

import math
import re
import subprocess
from collections import defaultdict

import pytest

from conftest import DATA, requires_trace_cmd
from zlperf.analysis import AnalysisOptions, analyze
from zlperf.report import build_document
from zlperf.readers import open_trace

SERIES_DAT = DATA / "series.dat"
pytestmark = requires_trace_cmd

_LINE = re.compile(r"\[(\d+)\]\s+(\d+)\.(\d+):\s+(zone_lock_\w+):\s+zone=(0x[0-9a-f]+)(?: success=(\w+))?")


def _nearest(values: list[int], per_mille: int) -> int:
    s = sorted(values)
    return s[max(1, -(-per_mille * len(s) // 1000)) - 1]


def _truth() -> dict:
    """Per zone pointer: acquisitions, and waits / holds paired per CPU as the obvious loop."""
    text = subprocess.run(["trace-cmd", "report", "-t", str(SERIES_DAT)], capture_output=True, text=True,
                          check=True).stdout
    zones: dict = defaultdict(lambda: {"acq": 0, "wait": [], "hold": [], "failed": 0})
    last: dict = {}  # cpu -> (event, zone, ts) of the last zone_lock event on that CPU
    for m in _LINE.finditer(text):
        cpu, sec, frac, ev, zone, success = m.groups()
        ts = int(sec) * 10**9 + int(frac.ljust(9, "0"))
        prev = last.get(cpu)
        if ev == "zone_lock_acquire_returned":
            if success != "true":
                zones[zone]["failed"] += 1
            else:
                zones[zone]["acq"] += 1
                if prev and prev[0] == "zone_lock_start_locking" and prev[1] == zone:
                    zones[zone]["wait"].append(ts - prev[2])
        elif ev == "zone_lock_released" and prev and prev[0] == "zone_lock_acquire_returned" and prev[1] == zone:
            zones[zone]["hold"].append(ts - prev[2])
        last[cpu] = (ev, zone, ts)
    return zones


@pytest.fixture(scope="module")
def doc() -> dict:
    with open_trace(str(SERIES_DAT)) as reader:
        return build_document(analyze(reader, AnalysisOptions(abi="series")))


def test_series_report_names_its_abi_and_what_it_cannot_show(doc):
    assert doc["abi"].startswith("zone_lock:*") and doc["profile"] == "zone-lock-series"
    assert doc["totals"]["contended_events"] is None and doc["totals"]["contended"] is None
    assert any("contended" in c for c in doc["cannot_show"])


def test_series_waits_and_holds_match_trace_cmd(doc):
    truth = _truth()
    got = {z["zone_ptr"]: z for z in doc["zones"]}
    assert set(got) == set(truth)
    for ptr, t in truth.items():
        z = got[ptr]
        assert z["acquisitions"] == t["acq"]
        for key, values in (("wait_ns", t["wait"]), ("hold_ns", t["hold"])):
            st = z[key]
            assert st["count"] == len(values) and st["sum"] == sum(values)
            assert st["min"] == min(values) and st["max"] == max(values)
            for label, pm in (("p50", 500), ("p90", 900), ("p99", 990)):
                assert st[label] == _nearest(values, pm), (ptr, key, label)
    assert sum(t["failed"] for t in truth.values()) == 0


def test_series_and_kmem_lanes_see_the_same_acquisitions(doc):
    """Both ABIs fire in the same helpers of this kernel: one hold per acquisition either way."""
    with open_trace(str(SERIES_DAT)) as reader:
        kmem = build_document(analyze(reader))  # auto: the patch's kmem events win
    assert kmem["profile"] == "hold-time"
    assert kmem["totals"]["acquisitions"] == doc["totals"]["acquisitions"]
    assert kmem["totals"]["hold_ns"]["count"] == doc["totals"]["hold_ns"]["count"]
    assert math.isclose(kmem["totals"]["hold_ns"]["sum"], doc["totals"]["hold_ns"]["sum"], rel_tol=0.1)
