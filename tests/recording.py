"""Helpers of the live recording tests: run zlperf and the workload, and check only what they own.

A live test may look at its own zlperf's tracefs instance (``instances/zlperf-PID``), its own processes
and its own files; never at the machine's shared tracing state, which other tracers change at any time.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterable, Optional, Set, Tuple

TRACEFS = Path("/sys/kernel/tracing")
ZLPERF = [sys.executable, "-m", "zlperf"]
WORKLOAD = [sys.executable, "-m", "zlperf.workload"]

_WORKERS_RE = re.compile(r"^workload: \d+ procs \(pids ([\d ]+)\)", re.M)


def run_zlperf(*args: str, timeout: float = 180, cwd: Optional[str] = None) -> Tuple[subprocess.CompletedProcess, int]:
    """Run ``python3 -m zlperf ARGS``; (its result, its pid) - the pid names its instance."""
    proc = subprocess.Popen([*ZLPERF, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"zlperf {' '.join(args)} did not finish in {timeout} s: {err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


def instance_of(pid: int) -> Path:
    """The tracefs instance a zlperf process records into."""
    return TRACEFS / "instances" / f"zlperf-{pid}"


def assert_no_instance_left(pid: int) -> None:
    """The recorder with this pid removed its instance (or never made one)."""
    assert not instance_of(pid).exists(), f"{instance_of(pid)} left behind"


def worker_pids(stderr: str) -> Set[int]:
    """The pids of the workload's workers, from its summary line (``workload: N procs (pids ...)``)."""
    m = _WORKERS_RE.search(stderr)
    assert m, f"no workload summary in: {stderr[-2000:]}"
    return {int(p) for p in m.group(1).split()}


def processes_with_arg(arg: str) -> Set[int]:
    """Pids whose command line has ``arg`` as one of its words (a marker only this test uses)."""
    found = set()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if arg in (p / "cmdline").read_bytes().decode(errors="replace").split("\0"):
                    found.add(int(p.name))
            except OSError:
                pass
    return found


def wait_for(condition, timeout: float, what: str, step: float = 0.02) -> None:
    """Poll ``condition()`` until it is true; AssertionError naming ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def comm_of(pid: int) -> str:
    """The task name of ``pid`` ('' once it is gone)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def children_named(pids: Iterable[int], comm: str) -> Set[int]:
    """Those of ``pids`` whose task name is ``comm``."""
    return {p for p in pids if comm_of(p) == comm}
