"""A live recording checked against an independent in-kernel counter (bpftrace), event for event.

bpftrace counts lock:contention_begin/end per pid while `zlperf record --profile stock` records
the workload. Every workload worker lives entirely inside the recording, so for each of them
the recorded counts must equal bpftrace's exactly (and the recording must report no loss).
The workers are found by the pids the workload prints, never by task name: other runs of the
workload may be on the machine, and the kernel's cache of task names is shared and may be stale.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading

import pytest

from conftest import have_tool, is_root
from recording import assert_no_instance_left, run_zlperf, worker_pids
from zlperf.readers import open_trace

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not is_root(), reason="needs root"),
    pytest.mark.skipif(not have_tool("bpftrace"), reason="bpftrace not installed"),
    pytest.mark.skipif(not os.path.exists("/sys/kernel/tracing/events/lock/contention_begin"),
                       reason="tracefs not mounted or no lock:contention_begin in this kernel"),
]

# BEGIN runs once every probe is attached: its line says counting has started.
PROGRAM = 'BEGIN { printf("counting\\n"); } ' \
          "tracepoint:lock:contention_begin { @begin[pid] = count(); } " \
          "tracepoint:lock:contention_end { @end[pid] = count(); }"


def _start_bpftrace() -> subprocess.Popen:
    proc = subprocess.Popen(["bpftrace", "-e", PROGRAM], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    counting = threading.Event()

    def watch() -> None:
        for line in proc.stdout:
            if line.strip() == "counting":
                counting.set()
                return  # the maps printed at exit are read by _stop_bpftrace

    threading.Thread(target=watch, daemon=True).start()
    if not counting.wait(60):
        proc.kill()
        proc.wait()
        pytest.skip("bpftrace did not attach its probes within 60 s")
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
        rec, pid = run_zlperf("record", "--profile", "stock", "-o", str(out), "--",
                              sys.executable, "-m", "zlperf.workload", "--procs", "2", "--seconds", "2")
    finally:
        counts = _stop_bpftrace(bpf)
    assert rec.returncode == 0, rec.stderr
    assert_no_instance_left(pid)
    recorded: dict[str, dict[int, int]] = {"begin": {}, "end": {}}
    with open_trace(str(out)) as reader:
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
    workers = worker_pids(rec.stderr)  # this run's two workers, as the workload reported them
    assert len(workers) == 2, workers
    total = 0
    for pid in workers:
        for kind in ("begin", "end"):
            assert recorded[kind].get(pid, 0) == counts[kind].get(pid, 0), (kind, pid)
            total += recorded[kind].get(pid, 0)
    assert total > 0, "the workload met no contended lock: nothing was compared"
