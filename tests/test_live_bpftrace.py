"""A live recording checked against an independent in-kernel counter (bpftrace), event for event.

bpftrace counts lock:contention_begin/end per pid while `zlperf record --profile stock` records
the workload. Every workload worker lives entirely inside the recording, so for each of them
the recorded counts must equal bpftrace's exactly (and the recording must report no loss).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import have_tool, is_root
from zlperf.readers import open_trace
from zlperf.workload import WORKER_COMM

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not is_root(), reason="needs root"),
    pytest.mark.skipif(not have_tool("bpftrace"), reason="bpftrace not installed"),
    pytest.mark.skipif(not os.path.exists("/sys/kernel/tracing/events/lock/contention_begin"),
                       reason="tracefs not mounted or no lock:contention_begin in this kernel"),
]

PROGRAM = "tracepoint:lock:contention_begin { @begin[pid] = count(); } " \
          "tracepoint:lock:contention_end { @end[pid] = count(); }"


def _start_bpftrace() -> subprocess.Popen:
    proc = subprocess.Popen(["bpftrace", "-e", PROGRAM], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    deadline = time.time() + 60
    line = proc.stdout.readline()  # "Attaching 2 probes..." once the probes are live
    if "Attaching" not in line or time.time() > deadline:
        proc.kill()
        pytest.skip(f"bpftrace did not attach: {line.strip()}")
    return proc


def _stop_bpftrace(proc: subprocess.Popen) -> dict[str, dict[int, int]]:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    counts: dict[str, dict[int, int]] = {"begin": {}, "end": {}}
    for m in re.finditer(r"@(begin|end)\[(\d+)\]: (\d+)", out):
        counts[m.group(1)][int(m.group(2))] = int(m.group(3))
    return counts


def test_recorded_contention_events_equal_bpftrace_counts(tmp_path, pcp_lists_shrunk):
    out = tmp_path / "stock.dat"
    bpf = _start_bpftrace()
    try:
        rec = subprocess.run([sys.executable, "-m", "zlperf", "record", "--profile", "stock", "-o", str(out), "--",
                              sys.executable, "-m", "zlperf.workload", "--procs", "2", "--seconds", "2"],
                             capture_output=True, text=True, timeout=180)
    finally:
        counts = _stop_bpftrace(bpf)
    assert rec.returncode == 0, rec.stderr
    recorded: dict[str, dict[int, int]] = {"begin": {}, "end": {}}
    with open_trace(str(out)) as reader:
        cmdlines = reader.info.cmdlines  # the kernel's saved cmdlines: past runs' pids too
        missed = 0
        for chunk in reader.chunks():
            for kind in ("begin", "end"):
                b = chunk.batches.get(f"lock:contention_{kind}")
                if b is not None:
                    for pid in b.pid.tolist():
                        recorded[kind][pid] = recorded[kind].get(pid, 0) + 1
            m = chunk.batches.get("zlperf:missed_events")
            missed += 0 if m is None else len(m)
    assert missed == 0, "the ring buffer dropped events: the comparison would be meaningless"
    # This run's workers: pids seen by either counter, named as the workload names its workers.
    seen = set(recorded["begin"]) | set(recorded["end"]) | set(counts["begin"]) | set(counts["end"])
    workers = {pid for pid in seen if cmdlines.get(pid) == WORKER_COMM}
    assert 1 <= len(workers) <= 2, workers
    total = 0
    for pid in workers:
        for kind in ("begin", "end"):
            assert recorded[kind].get(pid, 0) == counts[kind].get(pid, 0), (kind, pid)
            total += recorded[kind].get(pid, 0)
    assert total > 0, "the workload met no contended lock: nothing was compared"
