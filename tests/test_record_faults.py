"""Recordings that fail halfway, outputs that are traps, and recorders that run together or get killed.

Live (root, tracefs, trace-cmd): each test owns its zlperf processes, instance and files. What zlperf must
not change on the machine is proven from what it did, not from shared state other tracers also change:
the recorders run under strace, and every successful write, mkdir or rmdir into tracefs must be inside
their own instance. The tests still read the top-level ``tracing_on`` (the value they protect) and put it
back in a ``finally`` if the trace shows zlperf wrote it. Mounts made here are unmounted whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path
from typing import Iterable, List

import pytest

from conftest import have_tool, is_root
from hostile import assert_handled, run_zlperf as run_hostile
from recording import TRACEFS, WORKLOAD, ZLPERF, assert_no_instance_left, instance_of, run_zlperf, wait_for
from zlperf.record import kallsyms_path
from zlperf.record.guard import KPTR_RESTRICT, STATE_DIR
from zlperf.zonelocks import sidecar_path

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(not is_root(), reason="needs root"),
    pytest.mark.skipif(not (TRACEFS / "instances").is_dir(), reason="tracefs not mounted"),
    pytest.mark.skipif(not have_tool("trace-cmd"), reason="trace-cmd not installed"),
]
requires_strace = pytest.mark.skipif(not have_tool("strace"), reason="strace not installed")

TOP_TRACING_ON = TRACEFS / "tracing_on"
_TRACEFS_PATH = re.compile(r"<(/sys/kernel/tracing[^>]*)>|(?:mkdir|rmdir)\(\"(/sys/kernel/tracing[^\"]*)\"")


def traced(log: Path, *args) -> List[str]:
    """argv running ``zlperf ARGS`` under strace, logging its and its children's writes into tracefs."""
    return ["strace", "-f", "-y", "-qq", "-e", "trace=write,mkdir,rmdir", "-e", "signal=none", "-o", str(log),
            *ZLPERF, *map(str, args)]


def tracefs_writes_outside(log: Path, own: Iterable[str]) -> List[str]:
    """Successful writes, mkdirs and rmdirs into tracefs outside the instances named ``own``."""
    mine = [str(TRACEFS / "instances" / name) for name in own]
    found = []
    for line in log.read_text().splitlines():
        if "= -1" in line:
            continue
        for groups in _TRACEFS_PATH.findall(line):
            path = next(g for g in groups if g)
            if not any(path == m or path.startswith(m + "/") for m in mine):
                found.append(line)
    return found


@contextlib.contextmanager
def top_level_kept(*logs: Path):
    """Read the top-level tracing_on first; afterwards write it back only if a log shows zlperf wrote it
    (never clobbering what another tracer set meanwhile)."""
    found = TOP_TRACING_ON.read_text().strip()
    try:
        yield found
    finally:
        if any(log.exists() and f"<{TOP_TRACING_ON}>" in log.read_text() for log in logs):
            TOP_TRACING_ON.write_text(found)


@contextlib.contextmanager
def kptr_restrict_kept():
    """kernel.kptr_restrict as found afterwards (put back, and the test fails, if it changed)."""
    found = KPTR_RESTRICT.read_text().strip()
    try:
        yield
    finally:
        now = KPTR_RESTRICT.read_text().strip()
        if now != found:
            KPTR_RESTRICT.write_text(found)
            pytest.fail(f"kernel.kptr_restrict left at {now} (was {found}; put back)")


@contextlib.contextmanager
def tmpfs(where: Path, *options: str):
    """A small tmpfs mounted at ``where`` for the block, unmounted even when the block fails."""
    where.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options), "zlperf-test", str(where)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


def own_instances(stderr: str) -> List[str]:
    """The instances a recorder said it records into."""
    return re.findall(r"tracefs instance (zlperf-\d+)", stderr)


def error_line(res: subprocess.CompletedProcess) -> str:
    """The one error a failed recording ends with (after its statements of what it was doing)."""
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    last = [ln for ln in res.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith("zlperf: ") and not last.startswith("zlperf: warning:"), res.stderr
    return last


def _fork_recipe(tmp_path: Path) -> Path:
    """A small recipe whose events surely happen (the workload forks), so a file is never empty by chance."""
    recipe = tmp_path / "forks.yaml"
    recipe.write_text("events: [sched:sched_process_fork]\nbuffer_size_kb: 1024\n")
    return recipe


# ---------------------------------------------------------------------------------------------
# What zlperf writes into tracefs: only its own instance (traced with strace, not inferred from state)


@requires_strace
@pytest.mark.parametrize("dry_run", [False, True], ids=["record", "dry-run"])
def test_zlperf_writes_to_tracefs_only_inside_its_own_instance(dry_run, tmp_path):
    log = tmp_path / "strace.log"
    out = tmp_path / "s.dat"
    with top_level_kept(log), kptr_restrict_kept():
        res = subprocess.run(traced(log, "record", "--profile", "stock", *(["--dry-run"] if dry_run else []),
                                    "-o", out, "--", *WORKLOAD, "--procs", "1", "--seconds", "0.2", "--mb", "8"),
                             capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    own = own_instances(res.stderr)
    assert len(own) == 1, res.stderr
    outside = tracefs_writes_outside(log, own)
    assert outside == [], "zlperf wrote outside its own instance:\n" + "\n".join(outside[:20])
    if dry_run:
        assert tracefs_writes_outside(log, []) == [], "a dry run wrote into tracefs"
        assert list(tmp_path.iterdir()) == [log]


# ---------------------------------------------------------------------------------------------
# Killed during trace-cmd extract; two recorders at once


def _extract_of(zlperf_pid: int):
    """The pid of the `trace-cmd extract` zlperf_pid runs, or None."""
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            args = (p / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"extract" in args and f"zlperf-{zlperf_pid}".encode() in args:
            return int(p.name)
    return None


@requires_strace
def test_sigkill_during_extract_leaves_tracing_on_and_the_next_record_repairs(tmp_path):
    recipe = tmp_path / "big.yaml"  # enough data that extract runs for a while
    recipe.write_text("events: [kmem:mm_page_alloc, kmem:mm_page_free]\nbuffer_size_kb: 32768\n")
    out = tmp_path / "out" / "k.dat"
    out.parent.mkdir()
    log, next_log = tmp_path / "killed.strace", tmp_path / "next.strace"
    zpid = 0
    try:
        with top_level_kept(log, next_log) as found, kptr_restrict_kept():
            tracer = subprocess.Popen(traced(log, "record", "--recipe", recipe, "-o", out, "--", *WORKLOAD,
                                             "--procs", "2", "--seconds", "0.5", "--mb", "16"),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                wait_for(lambda: _children(tracer.pid), 60, "zlperf to start under strace")
                zpid = _children(tracer.pid)[0]
                extract = None
                deadline = time.monotonic() + 120
                while extract is None and tracer.poll() is None and time.monotonic() < deadline:
                    extract = _extract_of(zpid)
                    time.sleep(0.002)
                assert extract is not None, "never saw trace-cmd extract run"
                with contextlib.suppress(ProcessLookupError):
                    os.kill(extract, signal.SIGSTOP)  # hold it mid-file, then kill zlperf under it
                os.kill(zpid, signal.SIGKILL)
                tracer.communicate(timeout=60)  # strace ends once zlperf and extract (killed with it) are gone
            finally:
                if tracer.poll() is None:
                    tracer.kill()
                    tracer.wait()
            assert tracefs_writes_outside(log, [f"zlperf-{zpid}"]) == []  # the top-level tracing_on included
            assert TOP_TRACING_ON.read_text().strip() == found
            left = list(out.parent.iterdir())
            assert [p.name for p in left if not p.name.startswith(".k.dat.zlperf-")] == [], left  # only its folder
            # The next recording repairs what the killed one left, in one line.
            res = subprocess.run(traced(next_log, "record", "--recipe", _fork_recipe(tmp_path), "-o", tmp_path / "n.dat",
                                        "--", *WORKLOAD, "--procs", "1", "--seconds", "0.1", "--mb", "4"),
                                 capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        own = own_instances(res.stderr)
        # Its own instance, and the killed one's: the only two it may touch.
        assert tracefs_writes_outside(next_log, [*own, f"zlperf-{zpid}"]) == []
        repaired = [ln for ln in res.stderr.splitlines() if f"killed zlperf record (pid {zpid})" in ln]
        if not repaired:  # another recorder on this machine got there first: then it left nothing either
            assert not (STATE_DIR / f"record-{zpid}.json").exists(), res.stderr
        else:
            assert len(repaired) == 1 and f"removed tracefs instance zlperf-{zpid}" in repaired[0], repaired
            assert "partial files" in repaired[0], repaired
        assert not instance_of(zpid).exists()
        assert list(out.parent.iterdir()) == []
        for name in own:
            assert not (TRACEFS / "instances" / name).exists()
    finally:  # a failure before the repair must not leave the killed recorder's instance and files
        if zpid and instance_of(zpid).exists():
            subprocess.run(["rmdir", str(instance_of(zpid))], capture_output=True)
        for leftover in out.parent.glob(".k.dat.zlperf-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        if zpid:
            (STATE_DIR / f"record-{zpid}.json").unlink(missing_ok=True)


def _children(pid: int) -> List[int]:
    """Direct children of ``pid``."""
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    kids.append(int(p.name))
            except (OSError, ValueError, IndexError):
                pass
    return kids


@requires_strace
def test_two_recorders_started_together_both_record_and_leave_tracing_on(tmp_path):
    recipe = _fork_recipe(tmp_path)
    logs = [tmp_path / f"{i}.strace" for i in range(2)]
    with top_level_kept(*logs), kptr_restrict_kept():
        procs = [subprocess.Popen(traced(logs[i], "record", "--recipe", recipe, "-o", tmp_path / f"{i}.dat", "--",
                                         *WORKLOAD, "--procs", "1", "--seconds", "0.3", "--mb", "4"),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
        errs = [p.communicate(timeout=300)[1] for p in procs]
    for log, p, err in zip(logs, procs, errs):
        assert p.returncode == 0, err
        assert "Traceback" not in err
        own = own_instances(err)
        assert len(own) == 1 and tracefs_writes_outside(log, own) == []
        assert not (TRACEFS / "instances" / own[0]).exists()
    for i in range(2):
        rep = subprocess.run(["trace-cmd", "report", str(tmp_path / f"{i}.dat")], capture_output=True, text=True)
        assert rep.returncode == 0 and "sched_process_fork" in rep.stdout, rep.stderr


# ---------------------------------------------------------------------------------------------
# Full disks, read-only places, symlinks, file modes


@requires_strace
def test_recording_into_a_full_tmpfs_fails_in_one_line_and_leaves_nothing(tmp_path):
    # (Not through tests/hostile.py: its address-space cap alone makes trace-cmd extract fail.)
    log = tmp_path / "full.strace"
    with tmpfs(tmp_path / "full", "size=256k") as full, top_level_kept(log), kptr_restrict_kept():
        res = subprocess.run(traced(log, "record", "--profile", "stock", "-o", full / "t.dat", "--", *WORKLOAD,
                                    "--procs", "1", "--seconds", "0.2", "--mb", "4"),
                             capture_output=True, text=True, timeout=300)
        assert "No space left on device" in error_line(res), res.stderr
        assert list(full.iterdir()) == []  # no OUT.cpuN, no OUT.zlperf-PID.cpuN, no temporary file
    own = own_instances(res.stderr)
    assert len(own) == 1 and tracefs_writes_outside(log, own) == []
    assert not (TRACEFS / "instances" / own[0]).exists()


@pytest.mark.skipif(not have_tool("perf"), reason="perf not installed")
def test_perf_recording_whose_kernel_symbols_do_not_fit_is_kept(tmp_path):
    kallsyms_size = len(Path("/proc/kallsyms").read_bytes())
    size_kb = 2048  # a short perf.data is ~0.2 MB; /proc/kallsyms is several MB
    if kallsyms_size < 2 * size_kb * 1024:
        pytest.skip(f"/proc/kallsyms is only {kallsyms_size} bytes here")
    with tmpfs(tmp_path / "small", f"size={size_kb}k") as small:
        out = small / "p.perf.data"
        res, _ = run_zlperf("record", "--profile", "stock", "--backend", "perf", "-o", str(out), "--", "true")
        assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
        assert any(ln.startswith("zlperf: warning: ") and "kernel symbols" in ln and "recording is kept" in ln
                   for ln in res.stderr.splitlines()), res.stderr
        script = subprocess.run(["perf", "script", "-i", str(out)], capture_output=True, text=True, timeout=300)
        assert script.returncode == 0, script.stderr
        names = sorted(p.name for p in small.iterdir())
        assert names in (["p.perf.data"], ["p.perf.data", "p.perf.data.zones.json"]), names


@pytest.mark.parametrize("where", ["proc", "read-only"])
def test_unwritable_destination_fails_before_the_command_runs(where, tmp_path):
    ran = tmp_path / "command-ran"
    with contextlib.ExitStack() as stack:
        if where == "proc":
            out = Path(f"/proc/zlperf-test-{os.getpid()}.dat")
        else:
            out = stack.enter_context(tmpfs(tmp_path / "ro", "ro", "size=64k")) / "t.dat"
        o = run_hostile(["record", "--profile", "stock", "-o", out, "--", "touch", ran], timeout=120)
    assert assert_handled(o, allow_partial=False) == "error"
    assert str(out.parent) in o.stderr
    assert not ran.exists()


@pytest.mark.parametrize("backend", ["trace-cmd", "perf"])
def test_symlinks_planted_at_outputs_are_refused_and_their_targets_untouched(backend, tmp_path):
    if backend == "perf" and not have_tool("perf"):
        pytest.skip("perf not installed")
    out = tmp_path / ("o.perf.data" if backend == "perf" else "o.dat")
    outputs = [out, sidecar_path(out)] + ([kallsyms_path(out)] if backend == "perf" else [])
    ran = tmp_path / "command-ran"
    for planted in outputs:
        target = tmp_path / f"precious-{planted.name}"
        target.write_text("precious\n")
        planted.symlink_to(target)
        try:
            o = run_hostile(["record", "--profile", "stock", "--backend", backend, "-o", out, "--", "touch", ran],
                            timeout=120)
            assert assert_handled(o, allow_partial=False) == "error"
            assert "symbolic link" in o.stderr and str(planted) in o.stderr, o.stderr
            assert target.read_text() == "precious\n" and not ran.exists()
        finally:
            planted.unlink()


@pytest.mark.parametrize("backend", ["trace-cmd", "perf"])
def test_symlinks_planted_while_recording_are_replaced_or_refused_never_followed(backend, tmp_path):
    if backend == "perf" and not have_tool("perf"):
        pytest.skip("perf not installed")
    out = tmp_path / ("o.perf.data" if backend == "perf" else "o.dat")
    outputs = [out, sidecar_path(out)] + ([kallsyms_path(out)] if backend == "perf" else [])
    plant = "; ".join(f"echo precious > {t}.target; ln -s {t}.target {t}" for t in outputs)
    o = run_hostile(["record", "--profile", "stock", "--backend", backend, "-o", out, "--", "sh", "-c", plant],
                    timeout=300)
    assert o.returncode == 0, o.describe()
    for t in outputs:
        assert Path(f"{t}.target").read_text() == "precious\n", t  # never written through
    assert out.is_file() and not out.is_symlink()  # the recording replaced the link (rename, not open)
    for side in outputs[1:]:  # written by open-and-rename too late to see the link: refused with a warning
        assert side.is_symlink()
        assert any(str(side) in ln and ln.startswith("zlperf: warning:") for ln in o.stderr.splitlines()), o.stderr


@pytest.mark.skipif(not have_tool("perf"), reason="perf not installed")
def test_kernel_symbols_and_zone_names_have_the_recordings_mode(tmp_path):
    out = tmp_path / "m.perf.data"
    res, _ = run_zlperf("record", "--profile", "stock", "--backend", "perf", "-o", str(out), "--", "true")
    assert res.returncode == 0, res.stderr
    mode = stat.S_IMODE(out.stat().st_mode)
    assert mode & 0o077 == 0  # perf writes its file for its owner only
    assert stat.S_IMODE(kallsyms_path(out).stat().st_mode) == mode
    if sidecar_path(out).exists():
        assert stat.S_IMODE(sidecar_path(out).stat().st_mode) == mode


# ---------------------------------------------------------------------------------------------
# Signals, statuses, commands, durations


def test_nohup_keeps_recording_through_a_hangup(tmp_path):
    out = tmp_path / "h.dat"
    marker = tmp_path / "started"
    proc = subprocess.Popen([*ZLPERF, "record", "--recipe", str(_fork_recipe(tmp_path)), "-o", str(out), "--",
                             "sh", "-c", f"touch {marker}; sleep 2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))  # as nohup does
    try:
        wait_for(marker.exists, 120, "the command to start")
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped by a signal" not in err and out.exists()


def test_a_command_killed_by_a_signal_gives_128_plus_n(tmp_path):
    res, _ = run_zlperf("record", "--recipe", str(_fork_recipe(tmp_path)), "-o", str(tmp_path / "s.dat"), "--",
                        "sh", "-c", "kill -SEGV $$")
    assert res.returncode == 128 + signal.SIGSEGV, res.stderr
    assert any("killed by SIGSEGV" in ln for ln in res.stderr.splitlines()), res.stderr
    assert (tmp_path / "s.dat").exists()


@pytest.mark.parametrize("what", ["not-executable", "directory", "missing"])
def test_a_command_that_cannot_run_is_named_before_recording(what, tmp_path):
    cmd = tmp_path / "tool.sh"
    if what == "not-executable":
        cmd.write_text("#!/bin/sh\necho hi\n")
        cmd.chmod(0o644)
    elif what == "directory":
        cmd.mkdir()
    o = run_hostile(["record", "--profile", "stock", "-o", tmp_path / "c.dat", "--", cmd], timeout=120)
    assert assert_handled(o, allow_partial=False) == "error"
    want = {"not-executable": "is not executable", "directory": "is a directory", "missing": "command not found"}
    assert want[what] in o.stderr, o.stderr
    assert not (tmp_path / "c.dat").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0", "1e400"])
def test_impossible_durations_are_refused(value, tmp_path):
    o = run_hostile(["record", "--profile", "stock", "--dry-run", "--duration", value, "-o", tmp_path / "d.dat"],
                    timeout=60)
    assert assert_handled(o, allow_partial=False) == "error"
    assert "--duration" in o.stderr


@pytest.mark.skipif(not have_tool("bpftrace"), reason="bpftrace not installed")
def test_recording_while_bpf_programs_come_and_go_elsewhere(tmp_path):
    # trace-cmd extract alone fails ("error in size of file '/proc/kallsyms'") when a BPF program is
    # loaded while it copies /proc/kallsyms; zlperf gives it a stable snapshot.
    churn = subprocess.Popen(["sh", "-c", "while :; do timeout 0.5 bpftrace -e "
                              "'tracepoint:sched:sched_switch { @c = count(); }' >/dev/null 2>&1; done"],
                             start_new_session=True)
    try:
        for i in range(3):
            res, pid = run_zlperf("record", "--recipe", str(_fork_recipe(tmp_path)), "-o", str(tmp_path / f"{i}.dat"),
                                  "--", *WORKLOAD, "--procs", "1", "--seconds", "0.3", "--mb", "4")
            assert res.returncode == 0, res.stderr
            assert_no_instance_left(pid)
    finally:
        os.killpg(churn.pid, signal.SIGKILL)
        churn.wait()
    rep = subprocess.run(["trace-cmd", "report", str(tmp_path / "2.dat")], capture_output=True, text=True)
    assert rep.returncode == 0 and "sched_process_fork" in rep.stdout
