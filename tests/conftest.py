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
