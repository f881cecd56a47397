"""zlperf record on this machine's kernel, read back with trace-cmd report / perf script; Ctrl-C, SIGTERM,
refusals and --dry-run leave no instance behind. Also the workload that feeds the recordings.

The live tests check only what they own (their zlperf's instance, processes and files): other tracers may
use the machine at the same time."""

from __future__ import annotations

import io
import os
import pty
import re
import select
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from zlperf.workload import WORKER_COMM

from conftest import DATA, REPO, have_tool, is_root
from recording import (assert_no_instance_left, instance_of, processes_with_arg, run_zlperf, wait_for,
                       worker_pids)
from zlperf.recipes import load_recipe
from zlperf.record import RecordOptions, kallsyms_path, preflight, record, trace_cmd_refused
from zlperf.record.tracefs import Tracefs, find_tracefs

TRACEFS = find_tracefs()
ZLPERF = [sys.executable, "-m", "zlperf"]
WORKLOAD = [sys.executable, "-m", "zlperf.workload"]
# Frames of the page allocator's zone->lock paths (rmqueue_bulk / rmqueue_buddy are inlined into
# get_page_from_freelist on some builds, hence __rmqueue_pcplist).
ZONE_LOCK_FRAMES = re.compile(r"\b(__rmqueue_pcplist|rmqueue_bulk|rmqueue_buddy|free_pcppages_bulk|free_one_page)\b")

_LIVE = [
    pytest.mark.live,
    pytest.mark.skipif(not is_root(), reason="needs root"),
    pytest.mark.skipif(TRACEFS is None, reason="tracefs not mounted"),
    pytest.mark.skipif(not have_tool("trace-cmd"), reason="trace-cmd not installed"),
]


def live(test):
    """Mark a test as recording on this kernel; it skips cleanly without root, tracefs or trace-cmd."""
    for mark in _LIVE:
        test = mark(test)
    return test


@pytest.fixture(scope="module", autouse=True)
def _this_checkout():
    """Subprocesses (zlperf, the workload) import this checkout, whatever `pip install -e` points at."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p))
        yield


def report_lines(path: Path) -> list:
    res = subprocess.run(["trace-cmd", "report", "-i", str(path)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


_EVENT_LINE = re.compile(r"^(?:\S+:)?\s*(?P<comm>.+?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+[\d.]+:\s+(?P<event>\w+):")


def parse_report(lines: list):
    """(events per name, comm of each event, stacks as lists of frames after each kernel_stack)."""
    counts, comms, cpus_by_pid = Counter(), Counter(), defaultdict(Counter)
    stacks, current = [], None
    for line in lines:
        if line.startswith("=>"):
            if current is not None:
                current.append(line[2:].split()[0])
            continue
        m = _EVENT_LINE.match(line)
        if not m:
            continue
        ev = m.group("event")
        counts[ev] += 1
        comms[m.group("comm").strip()] += 1
        cpus_by_pid[(m.group("comm").strip(), int(m.group("pid")))][int(m.group("cpu"))] += 1
        current = [] if ev == "kernel_stack" else None
        if current is not None:
            stacks.append(current)
    return counts, comms, stacks, cpus_by_pid


def path_lines(stderr: str) -> list:
    """The one-line statements of which recording path was taken."""
    return [ln for ln in stderr.splitlines() if ln.startswith("zlperf: ") and "recording " in ln]


# ---------------------------------------------------------------------------------------------
# Unit-level facts that need no kernel


@pytest.mark.skipif(not have_tool("findmnt"), reason="findmnt (util-linux) not installed")
def test_find_tracefs_agrees_with_findmnt(tmp_path):
    res = subprocess.run(["findmnt", "-n", "-t", "tracefs", "-o", "TARGET"], capture_output=True, text=True)
    mounted = [ln.strip() for ln in res.stdout.splitlines() if ln.strip()]
    got = find_tracefs()
    assert (got is None) == (not mounted)
    if mounted:
        assert str(got) in mounted
    # Old systems: only debugfs, with tracing/ inside it. The same lines findmnt would read, from a file.
    debugfs = tmp_path / "debug"
    (debugfs / "tracing" / "events").mkdir(parents=True)
    mounts = tmp_path / "mounts"
    mounts.write_text(f"sysfs /sys sysfs rw 0 0\ndebugfs {debugfs} debugfs rw 0 0\n")
    assert find_tracefs(str(mounts)) == debugfs / "tracing"
    mounts.write_text("sysfs /sys sysfs rw 0 0\n")
    assert find_tracefs(str(mounts)) is None


def test_kallsyms_path_sits_beside_perf_data():
    # Same naming as the fixtures: full.perf.data -> full.perf.kallsyms(.gz).
    assert kallsyms_path(DATA / "full.perf.data").name + ".gz" == (DATA / "full.perf.kallsyms.gz").name
    assert kallsyms_path(Path("/x/out")).name == "out.kallsyms"


def test_defaults_follow_the_recipe_then_the_backend():
    r = load_recipe("stock")
    assert RecordOptions(r).output_path.name == r.output
    r.output = None
    assert RecordOptions(r).output_path.name == "trace.dat"
    assert RecordOptions(r, backend="perf").output_path.name == "perf.data"
    pc = load_recipe("page-churn")
    assert RecordOptions(pc).seconds == pc.duration
    assert RecordOptions(pc, command=["true"]).seconds is None  # the command decides
    assert RecordOptions(pc, command=["true"], duration=2).seconds == 2


def test_repair_of_a_killed_recorder_on_a_stand_in_machine(tmp_path, monkeypatch):
    """What the next recording undoes, on stand-in files (no root, nothing of the machine touched)."""
    import json

    from zlperf.record import guard

    root = tmp_path / "tracefs"
    (root / "instances" / "zlperf-999999999").mkdir(parents=True)  # a pid that cannot exist
    (root / "tracing_on").write_text("0\n")  # stopped on purpose by someone: never zlperf's to change
    kptr = tmp_path / "kptr_restrict"
    kptr.write_text("0\n")
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setattr(guard, "STATE_DIR", state)
    monkeypatch.setattr(guard, "KPTR_RESTRICT", kptr)
    work = tmp_path / "out" / ".t.dat.zlperf-abcdef12"
    work.mkdir(parents=True)
    (work / "t.dat.cpu0").write_bytes(b"partial")
    boot = guard.read_value(Path("/proc/sys/kernel/random/boot_id"))
    dead = {"pid": 999999999, "start": "1", "boot": boot, "instance": "zlperf-999999999", "workdir": str(work),
            "kptr_restrict_restore": "2"}
    (state / "record-999999999.json").write_text(json.dumps(dead))
    me = {"pid": os.getpid(), "start": guard._start_time(os.getpid()), "boot": boot, "instance": "zlperf-1"}
    (state / f"record-{os.getpid()}.json").write_text(json.dumps(me))  # alive: left alone
    (state / "record-12.json").write_text("{damaged")
    said = []
    guard.repair_leftovers(root, said.append)
    assert len(said) == 1 and said[0].startswith("repaired what a killed zlperf record (pid 999999999) left"), said
    assert not (root / "instances" / "zlperf-999999999").exists() and not work.exists()
    assert (root / "tracing_on").read_text().strip() == "0" and kptr.read_text().strip() == "2"
    # A value raised since (or by someone else) is never lowered by a repair.
    dead["kptr_restrict_restore"] = "1"
    (state / "record-999999999.json").write_text(json.dumps(dead))
    guard.repair_leftovers(root, said.append)
    assert kptr.read_text().strip() == "2"
    assert sorted(p.name for p in state.iterdir()) == [f"record-{os.getpid()}.json"]
    said.clear()
    guard.repair_leftovers(root, said.append)  # nothing left to repair: nothing said
    assert said == [] and sorted(p.name for p in state.iterdir()) == [f"record-{os.getpid()}.json"]


def test_workload_starts_fast_and_reports(tmp_path):
    t = time.monotonic()
    res = subprocess.run([*WORKLOAD, "--procs", "2", "--seconds", "0.3", "--mb", "4"], capture_output=True, text=True, timeout=60)
    took = time.monotonic() - t
    assert res.returncode == 0, res.stderr
    m = re.search(r"workload: (\d+) procs \(pids (\d+) (\d+)\), 4 MiB regions, [\d.]+ s: (\d+) rounds", res.stderr)
    assert m and int(m.group(1)) == 2 and int(m.group(4)) > 0, res.stderr
    assert len({m.group(2), m.group(3)}) == 2
    assert took < 60, f"workload took {took:.1f} s for 0.3 s of work"  # a hang guard, not a benchmark
    bad = subprocess.run([*WORKLOAD, "--mb", "0"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


# ---------------------------------------------------------------------------------------------
# Live recordings


@live
@pytest.mark.parametrize("backend", ["trace-cmd", "perf"])
def test_record_stock_with_each_backend(backend, tmp_path, pcp_lists_shrunk):
    if backend == "perf" and not have_tool("perf"):
        pytest.skip("perf not installed")
    if not Tracefs(TRACEFS).has_event("lock:contention_begin"):
        pytest.skip("kernel older than 5.19: no lock:contention_* events")
    out = tmp_path / ("s.perf.data" if backend == "perf" else "s.dat")
    res, pid = run_zlperf("record", "--profile", "stock", "--backend", backend, "-o", str(out), "--",
                          *WORKLOAD, "--procs", "2", "--seconds", "2", "--mb", "32")
    assert res.returncode == 0, res.stderr
    assert len(path_lines(res.stderr)) == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert_no_instance_left(pid)
    workers = worker_pids(res.stderr)
    if backend == "trace-cmd":
        counts, comms, stacks, cpus_by_pid = parse_report(report_lines(out))
        assert counts["contention_begin"] > 0 and counts["contention_end"] > 0
        # stacks: true. An event right before tracing_on goes to 0 can lose its stack, so allow a few.
        events = counts["contention_begin"] + counts["contention_end"]
        assert 0.95 * events <= counts["kernel_stack"] <= events
        # This run's workers waited too (found by pid: task names come from the kernel's shared cache).
        assert workers & {p for _, p in cpus_by_pid}
        zone = [s for s in stacks if ZONE_LOCK_FRAMES.search(" ".join(s))]
    else:
        syms = kallsyms_path(out)
        assert syms.exists()
        # The saved copy is this kernel's table: a symbol has the same address as in /proc/kallsyms now.
        def addr(text, name):
            m = re.search(rf"^([0-9a-f]+) [Tt] {name}$", text, re.M)
            return m and m.group(1)
        assert addr(syms.read_text(), "get_page_from_freelist") == addr(Path("/proc/kallsyms").read_text(), "get_page_from_freelist")
        script = subprocess.run(["perf", "script", "-i", str(out), "--kallsyms", str(syms)],
                                capture_output=True, text=True, timeout=300)
        assert script.returncode == 0, script.stderr
        text = script.stdout
        assert text.count("lock:contention_begin:") > 0 and text.count("lock:contention_end:") > 0
        zone = [blk for blk in text.split("\n\n") if "contention_begin" in blk and ZONE_LOCK_FRAMES.search(blk)]
    # With the per-CPU lists shrunk, the workload makes CPUs wait on zone->lock hundreds of times a second.
    assert zone, "no contention with page-allocator zone-lock frames in the stacks"


def _start(argv, terminal: bool):
    """Start zlperf as a plain child, or (terminal) as the foreground job of a new pseudo-terminal."""
    if not terminal:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        return proc.pid, proc, None
    pid, fd = pty.fork()
    if pid == 0:  # the child: session leader owning the pty, like a shell's foreground job
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    return pid, None, fd


def _drain(fd, seconds: float, buf: bytearray) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        r, _, _ = select.select([fd], [], [], 0.05)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the terminal's other side is closed
                return
            if not chunk:
                return
            buf += chunk


STOPS = [("trace-cmd", "SIGINT"), ("trace-cmd", "SIGTERM"), ("trace-cmd", "Ctrl-C at a terminal"), ("perf", "SIGINT")]


def _stop_recipe(tmp_path: Path) -> Path:
    """stock plus sched:sched_process_fork: the workload forks its workers, so the file surely has events."""
    recipe = tmp_path / "stop.yaml"
    recipe.write_text("extends: stock\n"
                      "events: [lock:contention_begin, lock:contention_end, sched:sched_process_fork]\n")
    return recipe


@live
@pytest.mark.parametrize("backend,how", STOPS, ids=[f"{b}-{h.split()[0]}" for b, h in STOPS])
def test_stop_mid_recording_leaves_a_readable_file_and_no_instance(backend, how, tmp_path):
    if backend == "perf" and not have_tool("perf"):
        pytest.skip("perf not installed")
    out = tmp_path / ("int.perf.data" if backend == "perf" else "int.dat")
    # A --seconds value no other run uses, to find this workload's processes.
    marker = f"{29 + os.getpid() % 997 / 1000:.3f}"
    argv = [*ZLPERF, "record", "--recipe", str(_stop_recipe(tmp_path)), "--backend", backend, "-o", str(out),
            "--", *WORKLOAD, "--procs", "2", "--seconds", marker, "--mb", "16"]
    terminal = how.startswith("Ctrl-C")
    pid, proc, fd = _start(argv, terminal)
    buf = bytearray()
    status = None
    try:
        # Stop once both workers run (they rename themselves after the fork): the forks are in the file.
        def workers_up() -> bool:
            if fd is not None:
                _drain(fd, 0.01, buf)
            return sum(Path(f"/proc/{p}/comm").read_text().strip() == WORKER_COMM
                       for p in processes_with_arg(marker) if Path(f"/proc/{p}/comm").exists()) >= 2
        wait_for(workers_up, 60, "the workload's two workers")
        sent = time.monotonic()
        if terminal:
            os.write(fd, b"\x03")  # the tty sends SIGINT to the whole foreground job
            while time.monotonic() - sent < 120:
                _drain(fd, 0.1, buf)
                done, st = os.waitpid(pid, os.WNOHANG)
                if done:
                    status = os.waitstatus_to_exitcode(st)
                    break
            _drain(fd, 5, buf)  # what it wrote just before exiting (the read ends with EIO once all is read)
            err = buf.decode(errors="replace")
        else:
            assert proc.poll() is None, proc.stderr.read()
            proc.send_signal(getattr(signal, how))
            _, err = proc.communicate(timeout=120)
            status = proc.returncode
    finally:
        if status is None:
            os.kill(pid, signal.SIGKILL)
        if fd is not None:
            os.close(fd)
    assert status == 0, err
    assert "the file is complete" in err and "Traceback" not in err
    # Stopped, not run to its end ~29 s later (said by the workload itself, not by a clock on a busy machine).
    assert "workload: interrupted" in err, err
    if backend == "perf":
        script = subprocess.run(["perf", "script", "-i", str(out)], capture_output=True, text=True, timeout=300)
        assert script.returncode == 0, script.stderr
        forks = script.stdout.count("sched:sched_process_fork:")
        assert kallsyms_path(out).exists()
    else:
        forks = parse_report(report_lines(out))[0]["sched_process_fork"]
    assert forks >= 2  # at least the workload's own two
    assert_no_instance_left(pid)
    # The workload went down with the recording.
    wait_for(lambda: not processes_with_arg(marker), 10, "the workload's processes to end")


@live
def test_minimal_profile_fails_with_one_line_and_tracefs_untouched(tmp_path):
    if Tracefs(TRACEFS).has_event("kmem:mm_zone_lock_contended"):
        pytest.skip("this kernel has the zone-lock tracepoint patch")
    ran = tmp_path / "command-ran"
    out = tmp_path / "m.dat"
    res, pid = run_zlperf("record", "--profile", "minimal", "-o", str(out), "--", "sh", "-c", f"touch {ran}")
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "lacks the zone-lock tracepoint patch" in lines[0] and "--profile stock" in lines[0]
    assert not ran.exists() and not out.exists()
    assert_no_instance_left(pid)


@live
def test_dry_run_touches_nothing_and_prints_what_really_works(tmp_path):
    out = tmp_path / "dry.dat"
    res, pid = run_zlperf("record", "--profile", "stock", "--dry-run", "-o", str(out), "--", *WORKLOAD,
                          "--procs", "1", "--seconds", "0.5", "--mb", "8")
    assert res.returncode == 0, res.stderr
    assert_no_instance_left(pid)
    assert list(tmp_path.iterdir()) == []
    plan = res.stdout.strip().splitlines()
    assert len(path_lines(res.stderr)) == 1
    # The plan is exact: running it by hand gives the recording.
    made = [ln.split()[1] for ln in plan if ln.startswith("mkdir ")]
    try:
        run = subprocess.run(["bash", "-e", "-c", "\n".join(plan)], capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        counts, _, _, _ = parse_report(report_lines(out))
        assert counts["contention_begin"] + counts["contention_end"] > 0 or counts == Counter()
        assert out.stat().st_size > 0
    finally:
        for d in made:
            if os.path.isdir(d):
                os.rmdir(d)
    assert made == [str(instance_of(pid))]


@live
def test_trace_cmd_record_arguments_are_accepted_by_trace_cmd(tmp_path):
    # A recipe with filters, buffer, clock, stacks and compression: trace-cmd must parse all of it.
    from zlperf.record.session import Session
    from zlperf.record.trace_cmd import trace_cmd_argv

    opts = RecordOptions(load_recipe(DATA / "recipes" / "good" / "base.yaml"), output=str(tmp_path / "r.dat"),
                         command=["true"])
    pf = preflight(opts)
    argv = trace_cmd_argv(Session(opts, pf, io.StringIO(), io.StringIO()))
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    text = res.stdout + res.stderr
    assert "usage" not in text.lower(), f"{shlex.join(argv)}: {text}"
    if pf.refused:
        assert res.returncode != 0 and "Can't enable ftrace" in text  # got past option parsing
    else:
        assert res.returncode == 0 and (tmp_path / "r.dat").exists()
    subprocess.run(["rm", "-f", str(tmp_path / "r.dat")])


@live
def test_unforeseen_refusal_falls_back_to_the_instance(tmp_path):
    if trace_cmd_refused() is None:
        pytest.skip("trace-cmd record works here")
    out = tmp_path / "fb.dat"
    opts = RecordOptions(load_recipe("stock"), output=str(out), command=[*WORKLOAD, "--procs", "1", "--seconds", "0.5", "--mb", "8"])
    pf = preflight(opts)
    pf.refused = None  # as if the probe had missed it: trace-cmd record runs and is refused
    err = io.StringIO()
    assert record(opts, out=io.StringIO(), err=err, checked=pf) == 0
    text = err.getvalue()
    assert "trace-cmd record was refused" in text and "tracefs instance" in text
    assert out.exists() and report_lines(out)
    assert_no_instance_left(os.getpid())


@live
def test_page_churn_is_large_and_workers_are_pinned_one_per_cpu(tmp_path):
    ncpu = len(os.sched_getaffinity(0))
    out = tmp_path / "pc.dat"
    res, pid = run_zlperf("record", "--profile", "page-churn", "-o", str(out), "--", *WORKLOAD,
                          "--procs", str(ncpu), "--seconds", "0.5", "--mb", "16")
    assert res.returncode == 0, res.stderr
    assert_no_instance_left(pid)
    counts, _, _, cpus_by_pid = parse_report(report_lines(out))
    assert counts["mm_page_alloc"] > 50_000 and counts["mm_page_free"] > 50_000
    assert "overflowed" not in res.stderr
    # This run's workers (by the pids the workload printed): each stays on one CPU, all CPUs used.
    by_pid = {p: c for (_, p), c in cpus_by_pid.items()}
    workers = worker_pids(res.stderr)
    assert len(workers) == ncpu and workers <= set(by_pid)
    home = []
    for w in workers:
        cpu, n = by_pid[w].most_common(1)[0]
        assert n >= 0.99 * sum(by_pid[w].values()), (w, by_pid[w])
        home.append(cpu)
    assert sorted(home) == sorted(os.sched_getaffinity(0))


@live
@pytest.mark.parametrize("version", [6, 7])
def test_file_version_option_gives_that_version(version, tmp_path):
    recipe = tmp_path / f"v{version}.yaml"
    recipe.write_text(f"extends: stock\nstacks: false\nbackend_options:\n  trace-cmd:\n    file_version: {version}\n")
    out = tmp_path / f"v{version}.dat"
    res, pid = run_zlperf("record", "--recipe", str(recipe), "--duration", "0.5", "-o", str(out))
    assert res.returncode == 0, res.stderr
    dump = subprocess.run(["trace-cmd", "dump", "--summary", "-i", str(out)], capture_output=True, text=True, timeout=60)
    m = re.search(r"^\s*(\d+)\s+\[Version\]", dump.stdout + dump.stderr, re.M)
    assert m and int(m.group(1)) == version
    report_lines(out)
    made = {p.name for p in tmp_path.iterdir()} - {out.name + ".zones.json"}  # the sidecar if bpftrace ran
    assert made == {recipe.name, out.name}  # no temporary files
    assert_no_instance_left(pid)


def _nobody_python() -> list:
    """argv prefix running this checkout's zlperf as user nobody with Debian's python3, or [] if impossible."""
    if not (is_root() and have_tool("runuser") and Path("/usr/bin/python3").exists()):
        return []
    probe = subprocess.run(["runuser", "-u", "nobody", "--", "/usr/bin/python3", "-c", "import yaml, numpy"],
                           capture_output=True, timeout=60)
    if probe.returncode != 0:
        return []
    src = str(Path(__file__).resolve().parent.parent)
    return ["runuser", "-u", "nobody", "--", "env", "-u", "PYTHONPATH", f"PYTHONPATH={src}", "HOME=/tmp",
            "/usr/bin/python3", "-m", "zlperf"]


@live
@pytest.mark.parametrize("backend", ["trace-cmd", "perf"])
def test_unprivileged_user_is_told_to_use_root(backend, tmp_path):
    argv = _nobody_python()
    if not argv:
        pytest.skip("cannot run as nobody here (runuser, or Debian python3 with yaml and numpy, missing)")
    out = Path(f"/tmp/zlperf-nobody-{os.getpid()}.dat")
    res = subprocess.run([*argv, "record", "--profile", "stock", "--backend", backend, "-o", str(out),
                          "--", "true"], capture_output=True, text=True, timeout=120, cwd="/tmp")
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs root" in lines[0], res.stderr
    assert not out.exists()


@live
@pytest.mark.skipif(not have_tool("unshare"), reason="unshare (util-linux) not installed")
def test_unmounted_tracefs_is_mounted_for_the_recording_and_unmounted_after(tmp_path):
    # A private mount namespace: tracefs and debugfs are unmounted there only, never for the rest of the machine.
    host_mounts = sorted(ln for ln in Path("/proc/mounts").read_text().splitlines() if "tracefs" in ln or "debugfs" in ln)
    out = tmp_path / "mnt.dat"
    zl = " ".join(shlex.quote(a) for a in [*ZLPERF, "record", "--recipe", str(_stop_recipe(tmp_path)), "-o", str(out), "--",
                                           *WORKLOAD, "--procs", "2", "--seconds", "0.5", "--mb", "16"])
    script = (
        "for m in $(awk '$3==\"tracefs\" || $3==\"debugfs\" {print $2}' /proc/mounts | sort -r); do umount \"$m\"; done\n"
        "echo before=$(grep -cE ' (tracefs|debugfs) ' /proc/mounts)\n"
        f"{zl}\n"
        "echo rc=$?\n"
        "echo after=$(grep -cE ' (tracefs|debugfs) ' /proc/mounts)\n"
    )
    res = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, timeout=120)
    if "before=" not in res.stdout:
        pytest.skip(f"cannot make a private mount namespace here: {res.stderr.strip()}")
    assert "before=0" in res.stdout and "rc=0" in res.stdout, res.stdout + res.stderr
    assert "tracefs is not mounted: mounting it at" in res.stderr
    assert "after=0" in res.stdout  # unmounted at the end
    assert parse_report(report_lines(out))[0]["sched_process_fork"] >= 2  # the workload's own forks
    assert sorted(ln for ln in Path("/proc/mounts").read_text().splitlines() if "tracefs" in ln or "debugfs" in ln) == host_mounts


@live
def test_oversized_ring_buffer_is_refused_before_touching_anything(tmp_path):
    # The limit comes from this machine: a quarter of MemAvailable, over all CPUs.
    avail_kb = int(re.search(r"^MemAvailable:\s+(\d+)", Path("/proc/meminfo").read_text(), re.M).group(1))
    per_cpu = avail_kb // (os.cpu_count() or 1) + 1024
    recipe = tmp_path / "huge.yaml"
    recipe.write_text(f"extends: stock\nbuffer_size_kb: {per_cpu}\n")
    res, pid = run_zlperf("record", "--recipe", str(recipe), "-o", str(tmp_path / "h.dat"), "--", "true")
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{recipe}:2:17: buffer_size_kb:" in lines[0] and "available" in lines[0], res.stderr
    assert_no_instance_left(pid)
    assert sorted(p.name for p in tmp_path.iterdir()) == [recipe.name]
