"""plugins/tracecmd/zone_lock.py (trace-cmd's Python API) prints what `zlperf report` prints."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import FULL_DAT, REPO, STOCK_DAT, WAIT_DAT

PLUGIN = REPO / "plugins" / "tracecmd" / "zone_lock.py"


def _json(*args) -> dict:
    proc = subprocess.run([sys.executable, "-m", "zlperf", *args], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _comparable(doc: dict) -> dict:
    doc = dict(doc)
    doc.pop("source")
    return doc


@pytest.mark.parametrize("path", [FULL_DAT, WAIT_DAT, STOCK_DAT], ids=lambda p: p.name)
def test_tracecmd_plugin_report_equals_zlperf_report(path):
    via_api = _json("tracecmd-script", str(PLUGIN), str(path), "--json")
    direct = _json("report", str(path), "--json")
    assert _comparable(via_api) == _comparable(direct)
    assert sum(via_api["events"].values()) > 0
