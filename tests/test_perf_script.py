"""`perf script -s plugins/perf/zone_lock.py` in perf's own Python agrees with `zlperf report`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FULL_PERF_DATA, FULL_PERF_KALLSYMS, REPO, requires_root

PERF = "/usr/bin/perf"
SCRIPT = REPO / "plugins" / "perf" / "zone_lock.py"
#: What live recordings run: memory churn on two CPUs, which makes lock contention here.
WORKLOAD = [sys.executable, "-m", "zlperf.workload", "--procs", "2", "--seconds", "1"]

pytestmark = pytest.mark.skipif(not os.access(PERF, os.X_OK), reason="no /usr/bin/perf")


def _env() -> dict:
    """perf as a user runs it: nothing on PYTHONPATH pointing at this checkout."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def perf_script(path, *script_args: str, script: Path = SCRIPT, cwd=None) -> subprocess.CompletedProcess:
    cmd = [PERF, "script", "-i", str(path), "-s", str(script)]
    if script_args:
        cmd += ["--", *script_args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=cwd)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    return res


def zlperf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zlperf", *args], capture_output=True, text=True, check=True)


def test_plugin_prints_the_same_text_report_as_zlperf_report():
    args = ("--by", "zone,caller,cpu,task", "--top", "5")
    mine = perf_script(FULL_PERF_DATA, *args).stdout
    theirs = zlperf("report", str(FULL_PERF_DATA), *args).stdout
    assert "zone-lock" in mine and "free_one_page+0x4e" in mine  # symbolized from the kallsyms beside it
    assert mine == theirs


def test_plugin_json_equals_zlperf_report_json():
    mine = json.loads(perf_script(FULL_PERF_DATA, "--json").stdout)
    theirs = json.loads(zlperf("report", "--json", str(FULL_PERF_DATA)).stdout)
    assert mine["events"]["kmem:mm_zone_locked"] > 0
    assert mine == theirs


def test_perf_kallsyms_option_is_used_like_report_kallsyms(tmp_path):
    copy = tmp_path / "x.perf.data"
    shutil.copy(FULL_PERF_DATA, copy)
    res = subprocess.run([PERF, "script", "-i", str(copy), "--kallsyms", str(FULL_PERF_KALLSYMS), "-s", str(SCRIPT),
                          "--", "--json"], capture_output=True, text=True, env=_env())
    mine = json.loads(res.stdout)
    theirs = json.loads(zlperf("report", "--json", "--kallsyms", str(FULL_PERF_KALLSYMS), str(copy)).stdout)
    assert mine["source"]["kallsyms"] == str(FULL_PERF_KALLSYMS)
    assert mine == theirs


def test_data_loc_strings_that_turn_into_bytearray(tmp_path):
    """A non-printable zone name makes perf pass bytearray from then on; both paths still agree, and
    both leave the damaged event out with the same warning (a zone name is never "Nor\\x01al")."""
    buf = bytearray(FULL_PERF_DATA.read_bytes())
    at = buf.find(b"Normal\0", len(buf) // 2)
    assert at > 0
    buf[at:at + 6] = b"Nor\x01al"
    path = tmp_path / "odd.perf.data"
    path.write_bytes(bytes(buf))
    shutil.copy(FULL_PERF_KALLSYMS, tmp_path / "odd.perf.kallsyms.gz")
    mine = json.loads(perf_script(path, "--json").stdout)
    theirs = json.loads(zlperf("report", "--json", str(path)).stdout)
    assert sorted(z["label"] for z in mine["zones"]) == ["0:Normal", "1:Normal"]
    assert any(w.startswith("1 kmem:mm_zone_lock_* events left out") for w in mine["warnings"]), mine["warnings"]
    assert mine == theirs


def test_lost_events_are_read_from_the_file_and_agree(tmp_path):
    """perf gives scripts no PERF_RECORD_LOST: the plugin reads the gaps itself, same report."""
    import perf_truth

    path = tmp_path / "lost.perf.data"
    _, cpu = perf_truth.write_with_lost(FULL_PERF_DATA, path, lost=11)
    shutil.copy(FULL_PERF_KALLSYMS, tmp_path / "lost.perf.kallsyms.gz")
    mine = json.loads(perf_script(path, "--json").stdout)
    theirs = json.loads(zlperf("report", "--json", str(path)).stdout)
    assert mine["missed_by_cpu"] == {str(cpu): 11}
    assert mine == theirs


def test_idle_task_samples_are_named_as_perf_names_them(tmp_path):
    """Samples of pid 0 (an interrupt on an idle CPU) belong to "swapper" in perf script and so in zlperf's reader."""
    import perf_truth

    path = tmp_path / "idle.perf.data"
    assert perf_truth.write_with_idle_samples(FULL_PERF_DATA, path, every=2) > 0  # enough to be a top task
    shutil.copy(FULL_PERF_KALLSYMS, tmp_path / "idle.perf.kallsyms.gz")
    assert " swapper " in perf_truth.script_text(path)  # perf's own name for them
    mine = json.loads(perf_script(path, "--json").stdout)
    theirs = json.loads(zlperf("report", "--json", str(path)).stdout)
    assert "swapper" in {t["comm"] for t in theirs["tasks"]}
    assert mine == theirs


def test_installed_plugin_runs_in_perfs_python(tmp_path):
    """pip-installed (non-editable) zlperf: `zlperf perf-script` names a script perf can run as is."""
    target = tmp_path / "site"
    # Build from a copy: pip builds in the source tree (build/), which other runs may share.
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", "tests", "lab", "bench", "build", "dist",
                                                             "*.egg-info", "__pycache__", ".pytest_cache"))
    res = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                          "--target", str(target), str(src)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot build the package here: {res.stderr.strip()[-300:]}")
    env = dict(os.environ, PYTHONPATH=str(target))
    where = subprocess.run([sys.executable, "-m", "zlperf", "perf-script"], capture_output=True, text=True,
                           env=env, cwd=tmp_path, check=True).stdout.strip()
    script = Path(where)
    assert script.is_absolute() and script.is_file() and script.is_relative_to(target), where
    mine = perf_script(FULL_PERF_DATA, "--json", script=script, cwd=tmp_path).stdout
    theirs = zlperf("report", "--json", str(FULL_PERF_DATA)).stdout
    assert json.loads(mine) == json.loads(theirs)


def test_zlperf_perf_script_prints_the_checkout_script():
    out = zlperf("perf-script").stdout.strip()
    assert Path(out).resolve() == SCRIPT.resolve()


@pytest.mark.live
@requires_root
def test_live_stock_recording_with_call_chains_agrees(tmp_path):
    path = tmp_path / "live.perf.data"
    rec = subprocess.run([PERF, "record", "-q", "-e", "lock:contention_begin", "-e", "lock:contention_end", "-a",
                          "-g", "-o", str(path), "--", *WORKLOAD], capture_output=True, text=True, cwd=REPO)
    if rec.returncode != 0:
        pytest.skip(f"perf record refused here: {rec.stderr.strip()[:200]}")
    mine = json.loads(perf_script(path, "--json").stdout)
    theirs = json.loads(zlperf("report", "--json", str(path)).stdout)
    assert sum(mine["events"].values()) > 0, "no contention recorded: nothing compared"
    assert mine["profile"] == "stock"
    assert mine == theirs
