"""Recordings that fail halfway, outputs that are traps, and recorders that run together or get killed.

Live (root, tracefs, trace-cmd): each test owns its zlperf processes, instance and files. The tests of the
machine-wide values zlperf protects (the top-level ``tracing_on``, ``kernel.kptr_restrict``) read exactly
those values, and put them back in a ``finally`` should zlperf not have. Mounts made here are unmounted
whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
import time
from pathlib import Path

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

TOP_TRACING_ON = TRACEFS / "tracing_on"


@contextlib.contextmanager
def machine_values_kept():
    """Yield the top-level tracing_on and kptr_restrict as found; put them back afterwards if they changed
    (then fail: zlperf should have)."""
    found = {TOP_TRACING_ON: TOP_TRACING_ON.read_text().strip(), KPTR_RESTRICT: KPTR_RESTRICT.read_text().strip()}
    changed = {}
    try:
        yield found
    finally:
        for path, value in found.items():
            now = path.read_text().strip()
            if now != value:
                changed[path] = (value, now)
                path.write_text(value)
    assert not changed, f"left changed (now restored): {changed}"


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


@pytest.mark.skipif(not have_tool("strace"), reason="strace not installed")
@pytest.mark.parametrize("dry_run", [False, True], ids=["record", "dry-run"])
def test_zlperf_writes_to_tracefs_only_inside_its_own_instance(dry_run, tmp_path):
    log = tmp_path / "strace.log"
    out = tmp_path / "s.dat"
    argv = ["strace", "-f", "-y", "-qq", "-e", "trace=write,mkdir,rmdir", "-e", "signal=none", "-o", str(log),
            *ZLPERF, "record", "--profile", "stock", *(["--dry-run"] if dry_run else []), "-o", str(out), "--",
            *WORKLOAD, "--procs", "1", "--seconds", "0.2", "--mb", "8"]
    with machine_values_kept():
        res = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    m = re.search(r"instance (zlperf-\d+)", res.stderr)
    assert m, res.stderr
    own = str(TRACEFS / "instances" / m.group(1))
    touched = []
    for line in log.read_text().splitlines():
        for path in re.findall(r"<(/sys/kernel/tracing[^>]*)>|(?:mkdir|rmdir)\(\"(/sys/kernel/tracing[^\"]*)\"", line):
            p = next(x for x in path if x)
            if "= -1" not in line and p != own and not p.startswith(own + "/"):
                touched.append(line)
    assert touched == [], "zlperf wrote outside its own instance:\n" + "\n".join(touched[:20])
    if dry_run:
        assert not any(own in line for line in log.read_text().splitlines()), "a dry run touched tracefs"
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


def test_sigkill_during_extract_leaves_tracing_on_and_the_next_record_repairs(tmp_path):
    recipe = tmp_path / "big.yaml"  # enough data that extract runs for a while
    recipe.write_text("events: [kmem:mm_page_alloc, kmem:mm_page_free]\nbuffer_size_kb: 32768\n")
    out = tmp_path / "out" / "k.dat"
    out.parent.mkdir()
    with machine_values_kept():
        proc = subprocess.Popen([*ZLPERF, "record", "--recipe", str(recipe), "-o", str(out), "--", *WORKLOAD,
                                 "--procs", "2", "--seconds", "0.5", "--mb", "16"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            extract = None
            deadline = time.monotonic() + 120
            while extract is None and proc.poll() is None and time.monotonic() < deadline:
                extract = _extract_of(proc.pid)
                time.sleep(0.002)
            assert extract is not None, "never saw trace-cmd extract run: " + (proc.stderr.read() if proc.poll() is not None else "")
            with contextlib.suppress(ProcessLookupError):
                os.kill(extract, signal.SIGSTOP)  # hold it mid-file, then kill zlperf under it
            proc.kill()
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        # extract dies with zlperf (SIGKILL on parent death, even while stopped).
        wait_for(lambda: not Path(f"/proc/{extract}").exists() or
                 (Path(f"/proc/{extract}/stat").read_text().split(")")[-1].split()[0] == "Z"), 30, "extract to die")
        # tracing_on is as found right now (machine_values_kept checks it again at the end).
    left = [p for p in out.parent.iterdir()]
    assert all(p.name.startswith(".k.dat.zlperf-") for p in left), left  # only its private folder
    assert not out.exists()
    # The next recording repairs what the killed one left, in one line.
    with machine_values_kept():
        res, pid = run_zlperf("record", "--recipe", str(_fork_recipe(tmp_path)), "-o", str(tmp_path / "next.dat"),
                              "--", *WORKLOAD, "--procs", "1", "--seconds", "0.1", "--mb", "4")
    assert res.returncode == 0, res.stderr
    repaired = [ln for ln in res.stderr.splitlines() if f"killed zlperf record (pid {proc.pid})" in ln]
    if not repaired:  # another recorder on this machine got there first: then it left nothing either
        assert not (STATE_DIR / f"record-{proc.pid}.json").exists(), res.stderr
    else:
        assert len(repaired) == 1 and f"removed tracefs instance zlperf-{proc.pid}" in repaired[0], repaired
        assert "partial files" in repaired[0], repaired
    assert not instance_of(proc.pid).exists()
    assert list(out.parent.iterdir()) == []
    assert_no_instance_left(pid)


def test_two_recorders_started_together_both_record_and_leave_tracing_on(tmp_path):
    recipe = _fork_recipe(tmp_path)
    with machine_values_kept():
        procs = [subprocess.Popen([*ZLPERF, "record", "--recipe", str(recipe), "-o", str(tmp_path / f"{i}.dat"),
                                   "--", *WORKLOAD, "--procs", "1", "--seconds", "0.3", "--mb", "4"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
        errs = [p.communicate(timeout=300)[1] for p in procs]
    for p, err in zip(procs, errs):
        assert p.returncode == 0, err
        assert "Traceback" not in err
        assert_no_instance_left(p.pid)
    for i in range(2):
        rep = subprocess.run(["trace-cmd", "report", str(tmp_path / f"{i}.dat")], capture_output=True, text=True)
        assert rep.returncode == 0 and "sched_process_fork" in rep.stdout, rep.stderr


# ---------------------------------------------------------------------------------------------
# Full disks, read-only places, symlinks, file modes


def test_recording_into_a_full_tmpfs_fails_in_one_line_and_leaves_nothing(tmp_path):
    # (Not through tests/hostile.py: its address-space cap alone makes trace-cmd extract fail.)
    with tmpfs(tmp_path / "full", "size=256k") as full, machine_values_kept():
        res, pid = run_zlperf("record", "--profile", "stock", "-o", str(full / "t.dat"), "--", *WORKLOAD,
                              "--procs", "1", "--seconds", "0.2", "--mb", "4")
        assert "No space left on device" in error_line(res), res.stderr
        assert list(full.iterdir()) == []  # no OUT.cpuN, no OUT.zlperf-PID.cpuN, no temporary file
        assert_no_instance_left(pid)
    assert not list(STATE_DIR.glob("record-*.json")) or all(
        Path(f"/proc/{m.group(1)}").exists() for m in
        (re.fullmatch(r"record-(\d+)\.json", p.name) for p in STATE_DIR.glob("record-*.json")) if m)


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
