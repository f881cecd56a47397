"""Shared test fixtures: paths to the real recordings and tool availability checks."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"
REPO = TESTS.parent

#: Real recordings from a kernel with the zone-lock tracepoints (see tests/data/PROVENANCE.md).
FULL_DAT = REPO / "zlperf" / "data" / "full.dat"  # also the package's embedded example
FULL_V6_DAT = DATA / "full.v6.dat"
WAIT_DAT = DATA / "wait.dat"
MINIMAL_DAT = DATA / "minimal.dat"
STOCK_DAT = DATA / "stock-threads.dat"
FULL_PERF_DATA = DATA / "full.perf.data"
FULL_PERF_KALLSYMS = DATA / "full.perf.kallsyms.gz"

TRACE_DATS = [FULL_DAT, FULL_V6_DAT, WAIT_DAT, MINIMAL_DAT, STOCK_DAT]


def have_tool(name: str) -> bool:
    """True when ``name`` is on PATH."""
    return shutil.which(name) is not None


def is_root() -> bool:
    return os.geteuid() == 0


requires_trace_cmd = pytest.mark.skipif(not have_tool("trace-cmd"), reason="trace-cmd not installed")
requires_perf = pytest.mark.skipif(not have_tool("perf"), reason="perf not installed")
requires_root = pytest.mark.skipif(not is_root(), reason="needs root")


@pytest.fixture(params=TRACE_DATS, ids=lambda p: p.name)
def trace_dat(request) -> Path:
    """Each real trace.dat fixture in turn."""
    return request.param


# --- a large real trace recorded on this machine (shared by the reader tests) -----------------
TRACEFS = Path("/sys/kernel/tracing")


@pytest.fixture(scope="session")
def kmem_trace(tmp_path_factory) -> Path:
    """A trace.dat of kmem:mm_page_alloc + mm_page_free from a tracefs instance (`trace-cmd extract -B`).

    Recorded once per session under a churn workload big enough to overflow the 16 MB/CPU
    buffer (so the file also holds real missed-events pages). The instance is always removed.
    """
    if not (is_root() and have_tool("trace-cmd") and (TRACEFS / "instances").is_dir()):
        pytest.skip("needs root, trace-cmd and tracefs at /sys/kernel/tracing")
    import subprocess
    import sys

    name = f"zlperf-test-kmem-{os.getpid()}"
    inst = TRACEFS / "instances" / name
    out = tmp_path_factory.mktemp("kmem") / "kmem.dat"
    try:
        inst.mkdir()
        (inst / "buffer_size_kb").write_text("16384")
        for ev in ("mm_page_alloc", "mm_page_free"):
            (inst / "events" / "kmem" / ev / "enable").write_text("1")
        (inst / "tracing_on").write_text("1")
        subprocess.run([sys.executable, "-m", "zlperf.workload", "--procs", "2", "--seconds", "2",
                        "--mb", "64"], check=True, capture_output=True, timeout=120)
        (inst / "tracing_on").write_text("0")
        subprocess.run(["trace-cmd", "extract", "-B", name, "-o", str(out)], check=True,
                       capture_output=True, timeout=300)
    finally:
        if inst.is_dir():
            try:
                (inst / "tracing_on").write_text("0")
            except OSError:
                pass
            inst.rmdir()
    return out


PCP_HIGH_FRACTION = Path("/proc/sys/vm/percpu_pagelist_high_fraction")


@pytest.fixture
def pcp_lists_shrunk():
    """vm.percpu_pagelist_high_fraction=100000 (it shrinks the per-CPU page lists, so zone->lock is contended often), then restored.

    An flock serialises every test (and test run) that changes it, so the value restored is the real
    original even when two pytest runs share the machine.
    """
    import fcntl

    with open("/run/zlperf-pcp-sysctl.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = PCP_HIGH_FRACTION.read_text().strip()
        try:
            PCP_HIGH_FRACTION.write_text("100000\n")
            yield
        finally:
            PCP_HIGH_FRACTION.write_text(old + "\n")
