"""Recording a recipe: preflight checks, then trace-cmd record, a tracefs instance + trace-cmd extract, or perf.

Nothing is touched before every check passed; whatever the recorder sets up (an instance, a tracefs
mount) is undone on success, errors, Ctrl-C and SIGTERM. ``dry_run`` prints the plan instead.
"""

from __future__ import annotations

__all__ = ["RecordOptions", "Preflight", "preflight", "record", "trace_cmd_refused", "kallsyms_path"]

import errno
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, List, Optional, Sequence, TextIO, Tuple

from zlperf.errors import RecordError, ZlperfError, warn
from zlperf.known_events import ZONE_LOCK_PATCH_EVENTS, ZONE_LOCK_SERIES_EVENTS
from zlperf.recipes import Recipe, check_filter
from zlperf.tracefs import DEFAULT_MOUNT, Instance, Tracefs, find_tracefs
from zlperf.zonelocks import sidecar_path, write_zone_locks
from zlperf.zonenames import ZoneLockWatcher, side_channel_unavailable, zone_layout

#: trace-cmd record writes 1 here first; the sandboxed CI machines refuse it (ENVIRONMENT.md).
FTRACE_ENABLED = Path("/proc/sys/kernel/ftrace_enabled")
# What trace-cmd record prints when the machine refuses it (trace-cmd 3.1.6, lib/trace-cmd and tracecmd/).
_REFUSAL_RE = re.compile(r"Can't enable ftrace|opening to '.*set_ftrace_filter'|set_ftrace_filter|Operation not permitted")

# trace clock -> perf --clockid (perf has no ring-buffer-only clocks like global or counter).
_PERF_CLOCKS = {"mono": "monotonic", "mono_raw": "monotonic_raw", "boot": "boottime", "tai": "tai"}

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class RecordOptions:
    """What to record and how: the recipe plus the command line's overrides."""

    recipe: Recipe
    output: Optional[str] = None  #: -o; default: the recipe's output, else trace.dat / perf.data
    duration: Optional[float] = None  #: --duration; with a command it is a time limit
    backend: Optional[str] = None  #: --backend; default: the recipe's, else trace-cmd
    command: List[str] = field(default_factory=list)  #: what to run while recording (after --)
    dry_run: bool = False

    @property
    def backend_name(self) -> str:
        """The backend in effect."""
        return self.backend or self.recipe.backend or "trace-cmd"

    @property
    def output_path(self) -> Path:
        """The output file in effect."""
        default = "perf.data" if self.backend_name == "perf" else "trace.dat"
        return Path(self.output or self.recipe.output or default)

    @property
    def seconds(self) -> Optional[float]:
        """How long to record: --duration, else (without a command) the recipe's duration, else until stopped."""
        if self.duration is not None:
            return self.duration
        return None if self.command else self.recipe.duration


@dataclass
class Preflight:
    """What the checks found: where tracefs is, the tool and its version, and the path to take."""

    tracefs: Tracefs
    mount_needed: bool  #: tracefs was not mounted; the recorder mounts it and unmounts at the end
    tool: str  #: path of trace-cmd or perf
    tool_version: str
    refused: Optional[str] = None  #: why `trace-cmd record` cannot run here (None: it can)
    notes: List[str] = field(default_factory=list)  #: one-line notes to show before recording


def kallsyms_path(output: Path) -> Path:
    """Where the perf backend saves /proc/kallsyms: X.data -> X.kallsyms, anything else -> X.kallsyms."""
    name = output.name[: -len(".data")] if output.name.endswith(".data") else output.name
    return output.with_name(name + ".kallsyms")


def trace_cmd_refused() -> Optional[str]:
    """Why `trace-cmd record` would be refused here, or None.

    trace-cmd record first writes 1 to /proc/sys/kernel/ftrace_enabled. Writing back the value already
    there is a no-op in the kernel (ftrace_enable_sysctl returns early when it does not change), so the
    probe changes nothing on a normal host and fails with EPERM where the sandbox forbids it.
    """
    try:
        current = FTRACE_ENABLED.read_text().strip()
    except FileNotFoundError:
        return None  # no dynamic ftrace: trace-cmd skips the file too
    except OSError as exc:
        return f"reading {FTRACE_ENABLED}: {exc.strerror}"
    try:
        fd = os.open(FTRACE_ENABLED, os.O_WRONLY)
        try:
            os.write(fd, current.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        return f"writing {FTRACE_ENABLED} gives {errno.errorcode.get(exc.errno or 0, exc.errno)}"
    return None


def _tool_version(tool: str, install: str) -> Tuple[str, str]:
    path = shutil.which(tool)
    if path is None:
        raise RecordError(f"{tool} is not installed (apt install {install}); zlperf records through it")
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RecordError(f"{path} does not run ({exc}); reinstall it (apt install --reinstall {install})")
    text = (out.stdout + out.stderr).strip()
    m = re.search(r"version\s+(\S+)", text)
    if out.returncode != 0 and not m:
        raise RecordError(f"`{tool} --version` failed: {text.splitlines()[-1] if text else out.returncode}")
    return path, (m.group(1) if m else "unknown")


def _missing_event_message(missing: List[str], tfs: Tracefs) -> str:
    kernel = os.uname().release
    patch = [e for e in missing if e in ZONE_LOCK_PATCH_EVENTS]
    series = [e for e in missing if e in ZONE_LOCK_SERIES_EVENTS]
    if patch:
        return (
            f"this kernel ({kernel}) lacks the zone-lock tracepoint patch ({', '.join(patch)} not in "
            f"{tfs.root}/events); try --profile stock"
        )
    if series:
        return (
            f"this kernel ({kernel}) lacks the zone_lock tracepoint series ({', '.join(series)} not in "
            f"{tfs.root}/events); try --profile stock"
        )
    return (
        f"event {missing[0]} is not in this kernel ({kernel}; no {tfs.event_dir(missing[0])}); "
        f"`ls {tfs.root}/events` shows what there is"
    )


def preflight(opts: RecordOptions) -> Preflight:
    """Check everything the recording needs, touching nothing; raises RecordError with one line on a gap."""
    recipe = opts.recipe
    backend = opts.backend_name
    if backend not in ("trace-cmd", "perf"):
        raise RecordError(f"unknown backend {backend!r} (trace-cmd or perf)")
    root = find_tracefs()
    mount_needed = root is None
    if root is None:
        if os.geteuid() != 0:
            raise RecordError(
                "tracefs is not mounted (no tracefs in /proc/mounts) and mounting it needs root: "
                f"sudo mount -t tracefs nodev {DEFAULT_MOUNT}"
            )
        if not DEFAULT_MOUNT.is_dir():
            raise RecordError(f"tracefs is not mounted and {DEFAULT_MOUNT} does not exist (is this kernel built with tracing?)")
        root = DEFAULT_MOUNT
    tfs = Tracefs(root)
    notes: List[str] = []
    if mount_needed:
        notes.append(f"tracefs is not mounted: mounting it at {root} as trace-cmd would, and unmounting it at the end")
    elif not tfs.readable():
        raise RecordError(f"tracefs at {root} is not readable by uid {os.geteuid()}: recording needs root (sudo zlperf record ...)")
    elif not tfs.writable():
        raise RecordError(f"tracefs at {root} is not writable by uid {os.geteuid()}: recording needs root (sudo zlperf record ...)")
    if not mount_needed:
        # With tracefs not mounted yet these checks run right after mounting (record() does them again).
        _check_kernel(recipe, tfs, backend)
    tool, version = _tool_version(backend, "trace-cmd" if backend == "trace-cmd" else "linux-perf")
    if opts.command:
        exe = shutil.which(opts.command[0])
        if exe is None:
            raise RecordError(f"command not found: {opts.command[0]} (give it as -- CMD ARGS..., with a path if it is not on PATH)")
        # perf and trace-cmd put their own directories first on PATH before running CMD: pass it resolved,
        # so `python3` means the same interpreter as in the user's shell.
        opts.command = [exe, *opts.command[1:]]
    out = opts.output_path
    if not out.parent.exists():
        raise RecordError(f"{out}: directory {out.parent} does not exist")
    if out.exists() and out.is_dir():
        raise RecordError(f"{out} is a directory; give -o a file name")
    _check_buffer_memory(recipe)
    pf = Preflight(tfs, mount_needed, tool, version, notes=notes)
    if backend == "trace-cmd":
        pf.refused = trace_cmd_refused()
        if "file_version" in recipe.backend_options.get("trace-cmd", {}) and pf.refused:
            notes.append("trace-cmd extract always writes version 7: converting with trace-cmd convert afterwards")
    else:
        if recipe.clock and recipe.clock != "local" and recipe.clock not in _PERF_CLOCKS:
            notes.append(f"perf has no {recipe.clock!r} clock: using perf's default (like 'local')")
        try:
            paranoid = int(Path("/proc/sys/kernel/perf_event_paranoid").read_text())
        except (OSError, ValueError):
            paranoid = 2
        if os.geteuid() != 0 and paranoid > -1:
            raise RecordError(
                f"perf record -a of tracepoints needs root (kernel.perf_event_paranoid is {paranoid}); run with sudo"
            )
    return pf


def _check_buffer_memory(recipe: Recipe) -> None:
    """Refuse ring buffers that would take more than a quarter of the available memory (one per CPU)."""
    if not recipe.buffer_size_kb:
        return
    cpus = os.cpu_count() or 1
    try:
        meminfo = Path("/proc/meminfo").read_text()
        avail_kb = int(re.search(r"^MemAvailable:\s+(\d+)", meminfo, re.M).group(1))  # type: ignore[union-attr]
    except (OSError, AttributeError, ValueError):
        return
    total = recipe.buffer_size_kb * cpus
    if total > avail_kb // 4:
        f, line, col = recipe.marks.get("buffer_size_kb", (recipe.path, 1, 1))
        raise RecordError(
            f"{f}:{line}:{col}: buffer_size_kb: {recipe.buffer_size_kb} KiB x {cpus} CPUs = {total // 1024} MiB of ring "
            f"buffer, more than a quarter of the {avail_kb // 1024} MiB available; lower it in a recipe that extends this one"
        )


def _check_kernel(recipe: Recipe, tfs: Tracefs, backend: str) -> None:
    """Events present, filters valid against the live formats, clock offered."""
    missing = [e for e in recipe.events if not tfs.has_event(e)]
    if missing:
        raise RecordError(_missing_event_message(missing, tfs))
    for ev, expr in recipe.filters.items():
        problems = check_filter(expr, tfs.event_format(ev))
        if problems:
            f, line, col = recipe.marks.get(f"filters.{ev}", (recipe.path, 1, 1))
            offset, problem = problems[0]
            raise RecordError(f"{f}:{line}:{col + max(offset, 0)}: filters.{ev}: {problem} (checked against this kernel's format)")
    clocks = tfs.clocks()
    if backend == "trace-cmd" and recipe.clock and clocks and recipe.clock not in clocks:
        f, line, col = recipe.marks.get("clock", (recipe.path, 1, 1))
        raise RecordError(f"{f}:{line}:{col}: clock: this kernel has no {recipe.clock!r} trace clock (it has: {', '.join(clocks)})")


# ----------------------------------------------------------------------------------------------
# Signals: Ctrl-C, SIGTERM and SIGHUP stop the recording; cleanup always runs.


class _StopSignals:
    """Catch stop signals for the duration of a recording and hand them to ``on_signal``."""

    def __init__(self, on_signal: Callable[[int], None]):
        self.on_signal = on_signal
        self.received: List[int] = []
        self._old: dict = {}

    def __enter__(self) -> "_StopSignals":
        try:
            for s in _STOP_SIGNALS:
                self._old[s] = signal.signal(s, self._handler)
        except ValueError:
            pass  # not the main thread (zlperf used as a library): no handlers, KeyboardInterrupt as usual
        return self

    def _handler(self, signum: int, _frame) -> None:
        self.received.append(signum)
        self.on_signal(signum)

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)

    @property
    def stopped(self) -> bool:
        return bool(self.received)


def _foreground_of_terminal() -> bool:
    """True when this process group owns the terminal: a Ctrl-C there already reached our children."""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def _signal(proc: Optional[subprocess.Popen], sig: int) -> None:
    if proc is not None and proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def _finish_child(proc: subprocess.Popen, first: Optional[int], say: Callable[[str], None]) -> int:
    """Make sure ``proc`` ends: ``first`` signal (if any), then SIGTERM, then SIGKILL, a few seconds apart."""
    steps = [s for s in (first, signal.SIGTERM, signal.SIGKILL) if s is not None]
    for i, sig in enumerate(steps):
        if proc.poll() is not None:
            break
        if i > 0:
            say(f"command {proc.args[0]} still running: sending {signal.Signals(sig).name}")
        _signal(proc, sig)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


# ----------------------------------------------------------------------------------------------
# The recorder


class _Recorder:
    def __init__(self, opts: RecordOptions, pf: Preflight, out: TextIO, err: TextIO):
        self.opts = opts
        self.pf = pf
        self.recipe = opts.recipe
        self.out = out
        self.err = err
        self.mounted = False
        self.child: Optional[subprocess.Popen] = None
        self.stop_reason: Optional[str] = None
        self.forwarded = False  #: a stop signal was already passed on to the command

    # -- output helpers
    def say(self, msg: str) -> None:
        print(f"zlperf: {msg}", file=self.err, flush=True)

    def plan(self, line: str) -> None:
        """A dry-run line: the exact command or tracefs write."""
        print(line, file=self.out, flush=True)

    def run_cmd(self, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        if self.opts.dry_run:
            self.plan(shlex.join(argv))
            return subprocess.CompletedProcess(list(argv), 0, "", "")
        return subprocess.run(list(argv), capture_output=True, text=True, **kw)

    # -- tracefs mount
    def mount(self) -> None:
        if not self.pf.mount_needed:
            return
        root = str(self.pf.tracefs.root)
        self.say(self.pf.notes[0])
        res = self.run_cmd(["mount", "-t", "tracefs", "nodev", root])
        if res.returncode != 0:
            raise RecordError(f"mounting tracefs at {root} failed: {(res.stderr or '').strip() or res.returncode}")
        self.mounted = not self.opts.dry_run
        if not self.opts.dry_run:
            _check_kernel(self.recipe, self.pf.tracefs, self.opts.backend_name)

    def unmount(self) -> None:
        if self.mounted or (self.opts.dry_run and self.pf.mount_needed):
            res = self.run_cmd(["umount", str(self.pf.tracefs.root)])
            self.mounted = False
            if res.returncode != 0:
                warn(f"could not unmount tracefs at {self.pf.tracefs.root}: {(res.stderr or '').strip()}")

    # -- one entry point
    def run(self) -> int:
        try:
            self.mount()
            zones = self._zone_names_start()
            try:
                rc = self._record()
            except BaseException:
                if zones is not None:
                    zones.stop()
                raise
            self._zone_names_finish(zones)
            return rc
        finally:
            self.unmount()

    def _record(self) -> int:
        backend = self.opts.backend_name
        if backend == "perf":
            return self.record_perf()
        if self.pf.refused:
            return self.record_instance(f"trace-cmd record is refused here ({self.pf.refused})")
        return self.record_trace_cmd()

    # -- zone names (stock kernels): a bpftrace side program reads node and name behind each lock address
    def _zone_names_start(self) -> Optional[ZoneLockWatcher]:
        """Start the side program when the recipe records lock:contention_begin; None when it does not run."""
        if "lock:contention_begin" not in self.recipe.events:
            return None
        side = sidecar_path(self.opts.output_path)
        why = side_channel_unavailable()
        if why is None:
            try:
                watcher = ZoneLockWatcher(zone_layout())
            except ZlperfError as exc:
                why = str(exc)
        if why is not None:
            warn(f"zone locks will show as addresses: {why}")
            return None
        if self.opts.dry_run:
            self.plan(f"# alongside, stopped with SIGINT after; its zlperf-zone lines go to {side}: "
                      + shlex.join(watcher.argv))
            return None
        try:
            watcher.start()
        except ZlperfError as exc:
            warn(f"zone locks will show as addresses: {exc}")
            return None
        self.say(f"naming zone locks with bpftrace (struct zone .lock at +{watcher.layout.lock_offset}, from BTF)")
        return watcher

    def _zone_names_finish(self, watcher: Optional[ZoneLockWatcher]) -> None:
        if watcher is None:
            return
        locks = watcher.stop()
        if not self.opts.output_path.exists():
            return
        try:
            side = write_zone_locks(self.opts.output_path, locks)
        except OSError as exc:
            warn(f"could not write the zone names ({exc.strerror}): zone locks will show as addresses")
            return
        names = ", ".join(sorted({f"{n}:{z}" for n, z in locks.values()}))
        self.say(f"wrote {side}: {len(locks)} zone lock{'s' if len(locks) != 1 else ''} named{' (' + names + ')' if names else ''}")

    # -- trace-cmd record (normal hosts)
    def trace_cmd_argv(self) -> List[str]:
        r = self.recipe
        argv = [self.pf.tool, "record", "-o", str(self.opts.output_path)]
        if r.buffer_size_kb:
            argv += ["-b", str(r.buffer_size_kb)]
        if r.clock:
            argv += ["-C", r.clock]
        if r.stacks:
            argv.append("-T")
        for ev in r.events:
            argv += ["-e", ev]
            if ev in r.filters:
                argv += ["-f", r.filters[ev]]
        topts = r.backend_options.get("trace-cmd", {})
        if "file_version" in topts:
            argv += ["--file-version", str(topts["file_version"])]
        if "compression" in topts:
            argv += ["--compression", str(topts["compression"])]
        if self.opts.command:
            argv += ["--", *self.opts.command]
        return argv

    def record_trace_cmd(self) -> int:
        argv = self.trace_cmd_argv()
        self.say(f"recording with trace-cmd record (trace-cmd {self.pf.tool_version}){self._until()}")
        if self.opts.dry_run:
            self.plan(shlex.join(argv) + self._dry_wait_note())
            return 0
        start = time.monotonic()
        captured: List[str] = []
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, errors="replace")
        relay = threading.Thread(target=_relay, args=(proc.stderr, self.err, captured), daemon=True)
        relay.start()
        # trace-cmd finishes its file on SIGINT; a SIGTERM to zlperf becomes a SIGINT to it.
        with _StopSignals(lambda s: _signal(proc, signal.SIGINT)) as sigs:
            rc = self._wait(proc, sigs, on_deadline=lambda: _signal(proc, signal.SIGINT))
        relay.join(timeout=5)
        text = "".join(captured)
        if rc != 0 and time.monotonic() - start < 10 and _REFUSAL_RE.search(text) and not self.opts.output_path.exists():
            # A refusal the probe did not foresee: trace-cmd dies during setup, before starting the command.
            return self.record_instance(f"trace-cmd record was refused ({_last_line(text)})")
        stopped_by_us = sigs.stopped or self.stop_reason == "duration"
        if rc != 0 and not (stopped_by_us and rc in (-signal.SIGINT, -signal.SIGTERM) and self.opts.output_path.exists()):
            raise RecordError(f"trace-cmd record failed with status {rc}: {_last_line(text)}")
        self._done(sigs)
        return 0 if stopped_by_us else rc

    # -- tracefs instance + trace-cmd extract (where trace-cmd record is refused)
    def record_instance(self, why: str) -> int:
        name = f"zlperf-{os.getpid()}"
        r = self.recipe
        self.say(f"{why}: recording through tracefs instance {name} + trace-cmd extract "
                 f"(trace-cmd {self.pf.tool_version}){self._until()}")
        self._warn_stale_instances()
        inst = Instance(self.pf.tracefs, name, dry_run=self.opts.dry_run, say=self.plan)
        out = self.opts.output_path
        sigs = _StopSignals(self._on_stop_signal)
        with sigs:
            try:
                inst.create()
                inst.write("tracing_on", "0")
                if r.buffer_size_kb:
                    inst.write("buffer_size_kb", str(r.buffer_size_kb))
                if r.clock:
                    inst.write("trace_clock", r.clock)
                if r.stacks:
                    inst.write("options/stacktrace", "1")
                for ev in r.events:
                    sysname, evname = ev.split(":", 1)
                    if ev in r.filters:
                        inst.write(f"events/{sysname}/{evname}/filter", r.filters[ev])
                    inst.write(f"events/{sysname}/{evname}/enable", "1")
                if sigs.stopped:
                    raise KeyboardInterrupt
                inst.write("tracing_on", "1")
                rc = self._run_workload(sigs)
                inst.write("tracing_on", "0")
                self._report_overruns(inst)
                self._extract(name, out)
            finally:
                if self.child is not None and self.child.poll() is None:
                    _finish_child(self.child, signal.SIGTERM, self.say)  # never leave the command behind
                # Tracefs exactly as found: the instance goes (trace-cmd extract may have removed it already).
                inst.remove()
        self._done(sigs)
        return rc

    def _run_workload(self, sigs: _StopSignals) -> int:
        """Run the command (or wait the duration / until stopped); the command's exit status, or 0."""
        if self.opts.dry_run:
            if self.opts.command:
                self.plan(shlex.join(self.opts.command) + self._dry_wait_note())
            else:
                secs = self.opts.seconds
                self.plan(f"sleep {secs:g}" if secs else "# wait for Ctrl-C")
            return 0
        if self.opts.command:
            try:
                self.child = subprocess.Popen(self.opts.command)
            except OSError as exc:
                raise RecordError(f"cannot run {self.opts.command[0]}: {exc.strerror}")
            rc = self._wait(self.child, sigs, on_deadline=lambda: None)
            if rc is None or self.child.poll() is None:
                first = None if (self.forwarded or self._terminal_sigint(sigs)) else signal.SIGINT
                rc = _finish_child(self.child, first, self.say)
            if rc != 0 and not sigs.stopped and self.stop_reason != "duration":
                warn(f"command {self.opts.command[0]} exited with status {rc}")
                return rc
            return 0
        self._wait(None, sigs, on_deadline=lambda: None)
        return 0

    def _terminal_sigint(self, sigs: _StopSignals) -> bool:
        # A Ctrl-C typed at the terminal went to the command as well: give it the chance to end on its own.
        return bool(sigs.received) and sigs.received[0] == signal.SIGINT and _foreground_of_terminal()

    def _on_stop_signal(self, signum: int) -> None:
        if self.child is None or self.child.poll() is not None:
            return
        if signum == signal.SIGINT and _foreground_of_terminal():
            return  # the terminal delivered it to the command too
        self.forwarded = True
        _signal(self.child, signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)

    def _extract(self, name: str, out: Path) -> None:
        topts = self.recipe.backend_options.get("trace-cmd", {})
        version = topts.get("file_version")
        target = out.with_name(out.name + ".v7.tmp") if version == 6 else out
        argv = [self.pf.tool, "extract", "-B", name, "-o", str(target)]
        if "compression" in topts and version != 6:
            argv += ["--compression", str(topts["compression"])]
        res = self._run_shielded(argv)
        if res.returncode != 0 or (not self.opts.dry_run and not target.exists()):
            raise RecordError(f"trace-cmd extract -B {name} failed: {_last_line(res.stderr + res.stdout)}")
        if version == 6:
            conv = [self.pf.tool, "convert", "-i", str(target), "-o", str(out), "--file-version", "6"]
            if "compression" in topts:
                conv += ["--compression", str(topts["compression"])]
            res = self._run_shielded(conv)
            if not self.opts.dry_run:
                target.unlink(missing_ok=True)
            if res.returncode != 0:
                raise RecordError(f"trace-cmd convert to version 6 failed: {_last_line(res.stderr + res.stdout)}")

    def _run_shielded(self, argv: List[str]) -> subprocess.CompletedProcess:
        """Run a finishing step in its own session, so that a second Ctrl-C cannot cut the file short."""
        return self.run_cmd(argv, start_new_session=True)

    def _report_overruns(self, inst: Instance) -> None:
        """Warn when the ring buffer overwrote events (the instance path keeps only what fits in it)."""
        if self.opts.dry_run:
            return
        lost = 0
        for stats in sorted(inst.path.glob("per_cpu/cpu*/stats")):
            try:
                text = stats.read_text()
            except OSError:
                continue
            m = re.search(r"^overrun:\s*(\d+)", text, re.M)
            lost += int(m.group(1)) if m else 0
        if lost:
            warn(
                f"the ring buffer overflowed: {lost} events were overwritten (the oldest are lost); "
                f"raise buffer_size_kb (now {self.recipe.buffer_size_kb or 'the default'}) or record for less time"
            )

    def _warn_stale_instances(self) -> None:
        for other in self.pf.tracefs.instances():
            m = re.fullmatch(r"zlperf-(\d+)", other)
            if m and not _pid_alive(int(m.group(1))):
                warn(f"stale instance {self.pf.tracefs.root}/instances/{other} from a killed zlperf: rmdir it to free its buffers")

    # -- perf record
    def perf_argv(self) -> List[str]:
        r = self.recipe
        popts = r.backend_options.get("perf", {})
        argv = [self.pf.tool, "record", "-a", "-o", str(self.opts.output_path)]
        if r.stacks:
            argv.append("-g")
            if popts.get("kernel_callchains_only"):
                argv.append("--kernel-callchains")
        if r.clock in _PERF_CLOCKS:
            argv += ["-k", _PERF_CLOCKS[r.clock]]
        pages = popts.get("mmap_pages")
        if pages is None and r.buffer_size_kb:
            # The recipe's per-CPU buffer, in pages, rounded up to the power of two perf requires.
            want = max(1, r.buffer_size_kb * 1024 // os.sysconf("SC_PAGE_SIZE"))
            pages = 1 << (want - 1).bit_length()
        if pages:
            argv += ["-m", str(pages)]
        for ev in r.events:
            argv += ["-e", ev]
            if ev in r.filters:
                argv += ["--filter", r.filters[ev]]
        if self.opts.command:
            argv += ["--", *self.opts.command]
        return argv

    def record_perf(self) -> int:
        argv = self.perf_argv()
        out = self.opts.output_path
        syms = kallsyms_path(out)
        self.say(f"recording with perf record (perf {self.pf.tool_version}){self._until()}; kernel symbols go to {syms}")
        if self.opts.dry_run:
            self.plan(shlex.join(argv) + self._dry_wait_note())
            self.plan(f"cp /proc/kallsyms {shlex.quote(str(syms))}")
            return 0
        proc = subprocess.Popen(argv)
        # perf record finishes its file on SIGINT and SIGTERM alike; forward what we got.
        with _StopSignals(lambda s: _signal(proc, signal.SIGINT if s == signal.SIGHUP else s)) as sigs:
            rc = self._wait(proc, sigs, on_deadline=lambda: _signal(proc, signal.SIGINT))
            # perf re-raises the SIGINT/SIGTERM that stopped it once its file is written.
            stopped_by_us = sigs.stopped or self.stop_reason == "duration"
            if rc != 0 and not (stopped_by_us and rc in (-signal.SIGINT, -signal.SIGTERM) and out.exists()):
                raise RecordError(f"perf record failed with status {rc} (its message is above)")
            self._save_kallsyms(syms)
        self._done(sigs)
        return 0 if stopped_by_us else rc

    def _save_kallsyms(self, dest: Path) -> None:
        """perf.data carries no kallsyms: keep a copy beside it (zlperf report --kallsyms)."""
        try:
            text = Path("/proc/kallsyms").read_text()
        except OSError as exc:
            warn(f"could not read /proc/kallsyms ({exc.strerror}): callers will stay numeric")
            return
        if text.startswith("0000000000000000 "):
            warn("/proc/kallsyms shows zero addresses (kernel.kptr_restrict): callers will stay numeric")
        dest.write_text(text)

    # -- shared helpers
    def _wait(self, proc: Optional[subprocess.Popen], sigs: _StopSignals, on_deadline: Callable[[], None]) -> Optional[int]:
        """Wait for ``proc`` to exit, the duration to pass or a stop signal; returns proc's status if it ended."""
        secs = self.opts.seconds
        deadline = time.monotonic() + secs if secs else None
        deadline_fired = False
        while True:
            if proc is not None:
                try:
                    return proc.wait(timeout=0.1)
                except subprocess.TimeoutExpired:
                    pass
            else:
                time.sleep(0.05)
            if sigs.stopped:
                self.stop_reason = "signal"
                if proc is None:
                    return None
                if proc is self.child:
                    return None  # the caller winds the command down
                continue  # trace-cmd / perf got the signal forwarded: let it finish its file
            if deadline is not None and not deadline_fired and time.monotonic() >= deadline:
                self.stop_reason = "duration"
                deadline_fired = True
                on_deadline()
                if proc is None or proc is self.child:
                    return None

    def _until(self) -> str:
        if self.opts.command:
            limit = f", at most {self.opts.duration:g} s" if self.opts.duration else ""
            return f", while {shlex.join(self.opts.command)} runs{limit}"
        if self.opts.seconds:
            return f", for {self.opts.seconds:g} s"
        return ", until Ctrl-C"

    def _dry_wait_note(self) -> str:
        if self.opts.command and self.opts.duration:
            return f"   # SIGINT after {self.opts.duration:g} s"
        if not self.opts.command and self.opts.seconds:
            return f"   # SIGINT after {self.opts.seconds:g} s"
        return ""

    def _done(self, sigs: _StopSignals) -> None:
        if self.opts.dry_run:
            return
        out = self.opts.output_path
        size = out.stat().st_size if out.exists() else 0
        stopped = " (stopped by a signal; the file is complete)" if sigs.stopped else ""
        self.say(f"wrote {out} ({size / 1e6:.1f} MB){stopped}")


def _relay(stream, err: TextIO, captured: List[str]) -> None:
    """Copy a child's stderr to ours while keeping it for the refusal check."""
    for line in stream:
        captured.append(line)
        err.write(line)
        err.flush()


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else "no message"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def record(
    opts: RecordOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr, checked: Optional[Preflight] = None
) -> int:
    """Check, then record ``opts.recipe``; returns the exit status (the backend's, or the command's).

    Raises :class:`~zlperf.errors.RecordError` (one line) when something is missing; tracefs is then untouched.
    ``checked`` is a :func:`preflight` result to use instead of checking again.
    """
    pf = checked or preflight(opts)
    rec = _Recorder(opts, pf, out, err)
    for note in pf.notes[1 if pf.mount_needed else 0:]:
        rec.say(note)
    return rec.run()
