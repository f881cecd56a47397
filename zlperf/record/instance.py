"""The tracefs-instance backend: where ``trace-cmd record`` is refused, zlperf sets up an instance of its own.

It creates ``instances/zlperf-PID``, enables the recipe's events there, runs the command, stops the instance
and turns its buffers into a trace.dat with ``trace-cmd extract -k -B``; the instance is removed in every
case. zlperf writes only inside its instance: ``-k`` keeps extract off the top-level buffer's settings.
"""

from __future__ import annotations

__all__ = ["instance_name", "record_instance"]

import contextlib
import os
import re
import shlex
import signal
import subprocess
from pathlib import Path
from typing import Iterator, List

from zlperf.errors import RecordError, warn
from zlperf.record.guard import KPTR_RESTRICT, read_value
from zlperf.record.isolation import isolated, prepare
from zlperf.record.session import Session, last_line
from zlperf.record.signals import StopSignals, die_with_parent
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
    inst = Instance(s.pf.tracefs, name, dry_run=s.opts.dry_run, say=s.plan)
    sigs = StopSignals(s.on_stop_signal)
    with sigs:
        try:
            s.remember(instance=name)  # before mkdir: a kill right after it leaves an instance to remove
            inst.create()
            inst.configure(r)
            if sigs.stopped:
                raise KeyboardInterrupt
            inst.write("tracing_on", "1")
            rc = s.run_workload(sigs)
            inst.write("tracing_on", "0")
            _report_overruns(s, inst)
            _extract(s, name)
        finally:
            s.stop_command()
            # Tracefs as found: the instance goes.
            inst.remove()
    s.done(sigs)
    return rc


def _extract(s: Session, name: str) -> None:
    """``trace-cmd extract`` the instance into the recording (converted to version 6 if the recipe asks)."""
    topts = s.recipe.backend_options.get("trace-cmd", {})
    version = topts.get("file_version")
    out = s.target
    target = out.with_name(out.name + ".v7") if version == 6 else out
    # -k: no reset at the end. Without it, extract turns the top-level tracing_on off while it runs, disables
    # every top-level event, clears their filters and the top-level buffer (tracecmd/trace-record.c:
    # trace_extract -> tracecmd_disable_all_tracing, finalize_record_trace): other tracers' state.
    argv = [s.pf.tool, "extract", "-k", "-B", name, "-o", str(target)]
    if "compression" in topts and version != 6:
        argv += ["--compression", str(topts["compression"])]
    with s.lock.held(s.say, "run trace-cmd extract") if not s.opts.dry_run else _nothing():
        if s.opts.dry_run:
            s.plan("# zlperf runs the next command in a private mount namespace with copies of /proc/kallsyms "
                   "and /proc/sys/kernel/kptr_restrict bound over them")
            res = s.run_cmd(argv)
        else:
            res = _run_isolated(s, argv)
    if res.returncode != 0 or (not s.opts.dry_run and not target.is_file()):
        # trace-cmd says why on the line before its last one ("trace-cmd: No space left on device").
        raise RecordError(f"trace-cmd extract -B {name} failed: {last_line(res.stderr, 2)}"
                          f"{_space_hint(s.outputs.final, res.stderr)}")
    if version == 6:
        conv = [s.pf.tool, "convert", "-i", str(target), "-o", str(out), "--file-version", "6"]
        if "compression" in topts:
            conv += ["--compression", str(topts["compression"])]
        res = _run_finishing_step(s, conv)
        if res.returncode != 0 and not s.opts.dry_run:
            # Keep what was recorded: the version 7 file is complete.
            warn(f"trace-cmd convert to version 6 failed ({last_line(res.stderr, 2)})"
                 f"{_space_hint(s.outputs.final, res.stderr)}: kept the recording as version 7")
            s.outputs.commit(target)
            return
        if s.opts.dry_run:
            s.plan(f"rm {shlex.quote(str(target))}")
    if not s.opts.dry_run:
        s.outputs.commit()


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def _run_isolated(s: Session, argv: List[str]) -> subprocess.CompletedProcess:
    """extract with a stable kallsyms and a private kptr_restrict (:mod:`zlperf.record.isolation`)."""
    assert s.outputs.workdir is not None
    try:
        binds = prepare(s.outputs.workdir, s.remember)
    except OSError as exc:
        why = f"cannot snapshot /proc/kallsyms ({exc.strerror})"
    else:
        try:
            return s.run_cmd(argv, start_new_session=True, preexec_fn=isolated(binds))
        except subprocess.SubprocessError:  # the namespace or a bind mount was refused in the child
            why = "cannot give it a private mount namespace here"
    warn(f"{why}: trace-cmd extract reads the live /proc/kallsyms (a BPF program loaded meanwhile makes it "
         "fail) and lowers kernel.kptr_restrict while it copies it")
    # It restores kptr_restrict itself when it finishes; should both it and zlperf be killed first, the
    # next recording puts the value back.
    s.remember(kptr_restrict_restore=read_value(KPTR_RESTRICT))
    res = _run_finishing_step(s, argv)
    s.remember(kptr_restrict_restore=None)
    return res


def _run_finishing_step(s: Session, argv: List[str]) -> subprocess.CompletedProcess:
    """Run extract or convert in its own session (a second Ctrl-C cannot cut the file short), dying with
    zlperf (a kill of zlperf must not leave it running on; the next run repairs what is left)."""
    return s.run_cmd(argv, start_new_session=True, preexec_fn=die_with_parent(signal.SIGKILL))


def _space_hint(out: Path, message: str) -> str:
    """What to do when the output's filesystem is full (the tool said so, or it is), else ''."""
    try:
        st = os.statvfs(out.parent if str(out.parent) else ".")
        full = st.f_bavail == 0
    except OSError:
        full = False
    if full or "No space left" in message:
        return f" (free space in {out.parent} or record to another -o; nothing partial was left there)"
    return ""


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
