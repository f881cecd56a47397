"""Checks before recording, touching nothing: tracefs, the tool, the events, filters, clock, buffer size.

Each gap is one :class:`RecordError` line saying what to do; ``trace_cmd_refused`` finds machines where
``trace-cmd record`` cannot run (the recorder then uses a tracefs instance and ``trace-cmd extract``).
"""

from __future__ import annotations

__all__ = ["FTRACE_ENABLED", "PERF_CLOCKS", "Preflight", "preflight", "trace_cmd_refused", "check_kernel"]

import errno
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Tuple

from zlperf.errors import RecordError, warn
from zlperf.recipes import Recipe, check_filter
from zlperf.recipes.known_events import ZONE_LOCK_PATCH_EVENTS, ZONE_LOCK_SERIES_EVENTS
from zlperf.record.options import RecordOptions
from zlperf.record.outputs import Outputs
from zlperf.record.requires import check_requires_here, requires_message
from zlperf.record.tracefs import DEFAULT_MOUNT, Tracefs, find_tracefs, write_kernel_file

#: trace-cmd record writes 1 here before it starts (tracecmd/trace-record.c, set_ftrace_proc); machines
#: locked down against the function tracer refuse the write with EPERM.
FTRACE_ENABLED = Path("/proc/sys/kernel/ftrace_enabled")

#: trace clock -> perf --clockid (perf has no ring-buffer-only clocks like global or counter).
PERF_CLOCKS = {"mono": "monotonic", "mono_raw": "monotonic_raw", "boot": "boottime", "tai": "tai"}


@dataclass
class Preflight:
    """What the checks found: where tracefs is, the tool and its version, and the path to take."""

    tracefs: Tracefs
    mount_needed: bool  #: tracefs was not mounted; the recorder mounts it and unmounts at the end
    tool: str  #: path of trace-cmd or perf
    tool_version: str
    refused: Optional[str] = None  #: why `trace-cmd record` cannot run here (None: it can)
    notes: List[str] = field(default_factory=list)  #: one-line notes to show before recording


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
        write_kernel_file(FTRACE_ENABLED, current)
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
        # With tracefs not mounted yet these checks run right after mounting (the recorder does them again).
        check_kernel(recipe, tfs, backend)
    tool, version = _tool_version(backend, "trace-cmd" if backend == "trace-cmd" else "linux-perf")
    if opts.command:
        # perf and trace-cmd put their own directories first on PATH before running CMD: pass it resolved,
        # so `python3` means the same interpreter as in the user's shell.
        opts.command = [_resolve_command(opts.command[0]), *opts.command[1:]]
    # Every output, before anything runs: a bad -o found after the workload would waste the recording.
    Outputs(opts).check(probe=not opts.dry_run)
    _check_buffer_memory(recipe)
    pf = Preflight(tfs, mount_needed, tool, version, notes=notes)
    if backend == "trace-cmd":
        pf.refused = trace_cmd_refused()
        if "file_version" in recipe.backend_options.get("trace-cmd", {}) and pf.refused:
            notes.append("trace-cmd extract always writes version 7: converting with trace-cmd convert afterwards")
    else:
        if recipe.clock and recipe.clock != "local" and recipe.clock not in PERF_CLOCKS:
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


def _resolve_command(name: str) -> str:
    """The executable ``name`` runs as; RecordError saying what is wrong when it cannot run."""
    exe = shutil.which(name)
    if exe is not None:
        return exe
    if os.sep in name:
        candidates = [Path(name)]
    else:
        candidates = [Path(d or ".") / name for d in os.environ.get("PATH", os.defpath).split(os.pathsep)]
    for c in candidates:
        if c.is_dir():
            raise RecordError(f"{c} is a directory, not a command to run")
        if c.exists():
            raise RecordError(f"{c} is not executable (chmod +x {c}, or run it through its interpreter: "
                              f"-- sh {c} ...)")
    where = "" if os.sep in name else " on PATH"
    raise RecordError(f"command not found{where}: {name} (give it as -- CMD ARGS..., with a path if it is not on PATH)")


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


def check_kernel(recipe: Recipe, tfs: Tracefs, backend: str) -> None:
    """The recipe's ``requires`` first, then events present, filters valid against the live formats, clock
    offered; RecordError otherwise."""
    lacking, unchecked = check_requires_here(recipe, tfs)
    if lacking:
        raise RecordError(requires_message(recipe, lacking))
    for what in unchecked:
        warn(f"recipe {recipe.name} requires {what}: not checked")
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
