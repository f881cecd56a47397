"""Live: `zlperf exporter` on this machine's stock kernel, scraped over HTTP on 127.0.0.1.

The window is made exact: churn workers are started first and wait; the exporter and a `zlperf record` of the same
recipe (in a second instance) are tracing before the workers are released; the recipe's filters keep the workers'
events only; the workers stop and are reaped before the last scrape and before the recording stops. Both then saw
the same events, so the exporter's zone-lock waits must equal what `zlperf record` + analysis attribute to zone
locks, one for one. The histogram buckets must add up to their count. After SIGTERM its instance and its bpftrace
are gone. (vm.percpu_pagelist_high_fraction is raised under the lock the stock live tests share, then restored.)
"""

from __future__ import annotations

import math
import os
import signal
import socket
import time

import pytest

from conftest import have_tool, is_root
from livetools import REPO, Workers, Zlperf, alive, children, instance, scrape, tracing_on, wait_until
from zlperf.analysis import analyze
from zlperf.readers import open_trace
from zlperf.report import build_document

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not is_root(), reason="needs root"),
    pytest.mark.skipif(not os.path.exists("/sys/kernel/tracing/events/lock/contention_begin"),
                       reason="tracefs not mounted or no lock:contention_begin in this kernel"),
]
prometheus_parser = pytest.importorskip("prometheus_client.parser")

#: Zone-lock waits to collect before the workers are stopped (contention depends on the machine's load).
ENOUGH_WAITS = 30


def _families(text: str) -> dict:
    return {f.name: f for f in prometheus_parser.text_string_to_metric_families(text)}


def _waits(fams: dict) -> int:
    fam = fams.get("zlperf_zone_lock_wait_seconds")
    return int(sum(s.value for s in fam.samples if s.name.endswith("_count"))) if fam else 0


def _recipe(tmp_path, pids) -> str:
    only = " || ".join(f"common_pid == {p}" for p in pids)
    path = tmp_path / "workers.yaml"
    path.write_text("description: stock, the test's workers only\nextends: stock\nbuffer_size_kb: 4096\n"
                    f"filters:\n  lock:contention_begin: {only}\n  lock:contention_end: {only}\n")
    return str(path)


def _check_histograms(fam) -> None:
    """Per series: cumulative buckets never decrease, +Inf is the count, the buckets add up to the count."""
    series: dict = {}
    for s in fam.samples:
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        series.setdefault(key, {"buckets": []})
        if s.name.endswith("_bucket"):
            series[key]["buckets"].append((float(s.labels["le"]), s.value))
        else:
            series[key][s.name.rsplit("_", 1)[1]] = s.value
    assert series
    for key, s in series.items():
        les = [le for le, _ in s["buckets"]]
        cum = [v for _, v in s["buckets"]]
        assert les == sorted(les) and math.isinf(les[-1]), key
        assert all(a <= b for a, b in zip(cum, cum[1:])), key
        per_bucket = [cum[0]] + [b - a for a, b in zip(cum, cum[1:])]
        assert sum(per_bucket) == cum[-1] == s["count"], key
        assert s["count"] > 0, key
        # The real sum of the waits lies between the buckets' bounds (log2: each bucket is (le/2, le]).
        lower = sum(n * le / 2 for le, n in zip(les[1:-1], per_bucket[1:-1]))
        upper = sum(n * le for le, n in zip(les[:-1], per_bucket[:-1]))
        if per_bucket[-1] == 0:
            assert lower <= s["sum"] <= upper * (1 + 1e-9), (key, lower, s["sum"], upper)


@pytest.mark.skipif(not have_tool("trace-cmd"), reason="trace-cmd not installed")
def test_exporter_counts_equal_a_recording_of_the_same_window(tmp_path, pcp_lists_shrunk):
    out = tmp_path / "workers.dat"
    with Workers(2) as workers:
        recipe = _recipe(tmp_path, workers.pids)
        exporter = Zlperf("exporter", "--recipe", recipe, "--listen", "127.0.0.1:0")
        record = None
        try:
            url = exporter.wait_for(r"serving metrics on (http://127\.0\.0\.1:\d+/metrics)").group(1)
            exporter_instance = f"zlperf-exporter-{exporter.pid}"
            assert tracing_on(exporter_instance)
            record = Zlperf("record", "--recipe", recipe, "-o", str(out))
            wait_until(lambda: tracing_on(f"zlperf-{record.pid}"), what="zlperf record's instance tracing")
            workers.go()
            deadline = time.monotonic() + 180
            while _waits(_families(scrape(url))) < ENOUGH_WAITS and time.monotonic() < deadline:
                time.sleep(1)
            workers.stop()
            # The workers are reaped: every event of theirs is in both ring buffers. A scrape reads them all.
            text = scrape(url)
            fams = _families(text)
            record.signal(signal.SIGINT)
            assert record.finish() == 0, record.stderr()
            bpftrace = {pid for pid, comm in children(exporter.pid).items() if comm == "bpftrace"}
            assert scrape(url, accept="application/openmetrics-text; version=1.0.0").rstrip().endswith("# EOF")
            exporter.signal(signal.SIGTERM)
            assert exporter.finish(timeout=120) == 0, exporter.stderr()
        finally:
            exporter.kill()
            if record is not None:
                record.kill()
    # After SIGTERM: our instance is gone, our bpftrace too.
    assert not instance(exporter_instance).exists()
    assert not any(alive(pid) for pid in bpftrace)
    assert "tracefs instance removed" in exporter.stderr()

    with open_trace(str(out)) as reader:
        doc = build_document(analyze(reader))
    assert doc["profile"] == "stock"
    recorded_waits = doc["totals"]["wait_ns"]["count"]
    assert recorded_waits >= 1, "the workers caused no zone-lock wait: " + "; ".join(doc["notes"])
    contended = fams["zlperf_zone_lock_contended_events"]
    wait = fams["zlperf_zone_lock_wait_seconds"]
    # Equal, one for one: contended events and waits. (Not their durations: every instance stamps an event
    # when its own ring buffer takes it, after the instances before it took theirs and their stacks, so
    # each instance's waits include the tracing work of the instances after it: a few microseconds each.)
    # A recording that lost events (its ring buffer full on a loaded machine) can only have fewer; it says so.
    lost = {k: doc[k] for k in ("missed_events", "missed_events_unknown_gaps", "kernel_overrun",
                                "kernel_dropped_events") if doc[k]}
    exported = sum(s.value for s in contended.samples)
    if lost:
        assert exported >= doc["totals"]["contended_events"] and _waits(fams) >= recorded_waits, lost
    else:
        assert exported == doc["totals"]["contended_events"], "no loss reported by the recording"
        assert _waits(fams) == recorded_waits
    # Per zone, when both named the zones (each names them with its own bpftrace).
    ours = {s.labels["zone"]: s.value for s in contended.samples}
    theirs = {z["label"]: z["contended_events"] for z in doc["zones"]}
    if not lost and not any(label.startswith("lock@") for label in [*ours, *theirs]):
        assert ours == theirs
    _check_histograms(wait)
    explained = (REPO / "docs" / "live_example.txt").read_text()
    assert not [name for name in fams if f"`{name}" not in explained], "metrics not explained in the docs"
    assert fams["zlperf_events_lost"].samples[0].value == 0
    # Decoded: the same lock events, plus kernel stacks.
    assert fams["zlperf_exporter_events_decoded"].samples[0].value >= (
        doc["events"]["lock:contention_begin"] + doc["events"]["lock:contention_end"])
    cpu = {s.labels["process"]: s.value for s in fams["zlperf_exporter_cpu_seconds"].samples}
    assert cpu["zlperf"] > 0


def test_exporter_that_cannot_listen_says_so_and_leaves_tracefs_as_found(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = busy.getsockname()[1]
        exporter = Zlperf("exporter", "--profile", "stock", "--listen", f"127.0.0.1:{port}")
        rc = exporter.finish(timeout=180)
    finally:
        busy.close()
    err = exporter.stderr().strip().splitlines()
    assert rc == 2 and err[-1].startswith(f"zlperf: cannot listen on 127.0.0.1:{port}"), err
    assert not instance(f"zlperf-exporter-{exporter.pid}").exists()


def test_exporter_refuses_a_bad_address_before_touching_tracefs():
    exporter = Zlperf("exporter", "--listen", "localhost")
    assert exporter.finish(timeout=60) == 2
    assert exporter.stderr().strip() == ("zlperf: --listen 'localhost': give HOST:PORT, e.g. 127.0.0.1:9466 "
                                         "(port 0: any free port)")
    assert not instance(f"zlperf-exporter-{exporter.pid}").exists()
