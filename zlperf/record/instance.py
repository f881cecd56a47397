"""The tracefs-instance backend: where ``trace-cmd record`` is refused, zlperf sets up an instance of its own.

It creates ``instances/zlperf-PID``, enables the recipe's events there, runs the command, stops the instance
and turns its buffers into a trace.dat with ``trace-cmd extract -B``; the instance is removed in every case.
"""

from __future__ import annotations

__all__ = ["instance_name", "record_instance"]

import os
import re
from pathlib import Path

from zlperf.errors import RecordError, warn
from zlperf.record.session import Session, last_line
from zlperf.record.signals import StopSignals
from zlperf.record.tracefs import Instance


def instance_name(pid: int) -> str:
    """The tracefs instance a zlperf process records into."""
    return f"zlperf-{pid}"


def record_instance(s: Session, why: str) -> int:
    """Record through a tracefs instance + ``trace-cmd extract``; the command's exit status, or 0."""
    name = instance_name(os.getpid())
    r = s.recipe
    s.say(f"{why}: recording through tracefs instance {name} + trace-cmd extract "
          f"(trace-cmd {s.pf.tool_version}){s.until()}")
    _warn_stale_instances(s)
    inst = Instance(s.pf.tracefs, name, dry_run=s.opts.dry_run, say=s.plan)
    out = s.opts.output_path
    sigs = StopSignals(s.on_stop_signal)
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
            rc = s.run_workload(sigs)
            inst.write("tracing_on", "0")
            _report_overruns(s, inst)
            _extract(s, name, out)
        finally:
            s.stop_command()
            # Tracefs exactly as found: the instance goes (trace-cmd extract may have removed it already).
            inst.remove()
    s.done(sigs)
    return rc


def _extract(s: Session, name: str, out: Path) -> None:
    topts = s.recipe.backend_options.get("trace-cmd", {})
    version = topts.get("file_version")
    target = out.with_name(out.name + ".v7.tmp") if version == 6 else out
    argv = [s.pf.tool, "extract", "-B", name, "-o", str(target)]
    if "compression" in topts and version != 6:
        argv += ["--compression", str(topts["compression"])]
    res = _run_shielded(s, argv)
    if res.returncode != 0 or (not s.opts.dry_run and not target.exists()):
        raise RecordError(f"trace-cmd extract -B {name} failed: {last_line(res.stderr + res.stdout)}")
    if version == 6:
        conv = [s.pf.tool, "convert", "-i", str(target), "-o", str(out), "--file-version", "6"]
        if "compression" in topts:
            conv += ["--compression", str(topts["compression"])]
        res = _run_shielded(s, conv)
        if not s.opts.dry_run:
            target.unlink(missing_ok=True)
        if res.returncode != 0:
            raise RecordError(f"trace-cmd convert to version 6 failed: {last_line(res.stderr + res.stdout)}")


def _run_shielded(s: Session, argv):
    """Run a finishing step in its own session, so that a second Ctrl-C cannot cut the file short."""
    return s.run_cmd(argv, start_new_session=True)


def _report_overruns(s: Session, inst: Instance) -> None:
    """Warn when the ring buffer overwrote events (the instance path keeps only what fits in it)."""
    if s.opts.dry_run:
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
            f"raise buffer_size_kb (now {s.recipe.buffer_size_kb or 'the default'}) or record for less time"
        )


def _warn_stale_instances(s: Session) -> None:
    for other in s.pf.tracefs.instances():
        m = re.fullmatch(r"zlperf-(\d+)", other)
        if m and not _pid_alive(int(m.group(1))):
            warn(f"stale instance {s.pf.tracefs.root}/instances/{other} from a killed zlperf: rmdir it to free its buffers")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
