"""The latency heatmap in the report document (timeline bins' `wait_hist_log2`) against `trace-cmd report` text:
every contended wait counted in the bin of its timestamp and the log2 bucket of its wait (bit length)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import truth
from conftest import FULL_DAT, REPO, WAIT_DAT, requires_trace_cmd

import pytest


def _doc(*args: str) -> dict:
    proc = subprocess.run([sys.executable, "-m", "zlperf", *args], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300, check=True)
    return json.loads(proc.stdout)


@requires_trace_cmd
@pytest.mark.parametrize("path", [FULL_DAT, WAIT_DAT], ids=lambda p: p.name)
def test_heatmap_equals_trace_cmd_text(path):
    doc = _doc("report", str(path), "--json")
    tl = doc["timeline"]
    want: Counter = Counter()
    for ev in truth.parse(path).stream:
        if not isinstance(ev, tuple) and ev.event == "mm_zone_locked" and ev.f["contended"] == "1":
            want[((ev.ts - tl["start_ns"]) // tl["bin_ns"], int(ev.f["wait"]).bit_length())] += 1
    got = Counter({(i, b): n for i, bin_ in enumerate(tl["bins"]) for b, n in enumerate(bin_["wait_hist_log2"]) if n})
    assert got == want and sum(got.values()) == doc["totals"]["wait_ns"]["count"] > 0
    assert all(sum(b["wait_hist_log2"]) == b["waits"] for b in tl["bins"])


def test_merged_heatmap_adds_up(tmp_path):
    one = tmp_path / "a.json"
    one.write_text(json.dumps(_doc("report", "--example", "--json")))
    merged = _doc("merge", str(one), str(one))
    hist = [0] * 65
    for b in merged["timeline"]["bins"]:
        for i, n in enumerate(b["wait_hist_log2"]):
            hist[i] += n
    want = merged["totals"]["wait_ns"]["hist_log2"]
    assert hist[:len(want)] == want and not any(hist[len(want):])
