"""The ``trace-cmd record`` backend (normal hosts): one trace-cmd process records the recipe into OUT.

Where the machine refuses it in a way the preflight probe did not foresee, trace-cmd dies during setup
and the recording falls back to a tracefs instance + ``trace-cmd extract`` (:mod:`zlperf.record.instance`).
"""

from __future__ import annotations

__all__ = ["trace_cmd_argv", "record_trace_cmd"]

import re
import shlex
import signal
import subprocess
import threading
import time
from typing import List, TextIO

from zlperf.errors import RecordError
from zlperf.record.instance import record_instance
from zlperf.record.session import Session, last_line
from zlperf.record.signals import StopSignals, die_with_parent, send_signal

# What trace-cmd record prints when the machine refuses it (trace-cmd 3.1.6, lib/trace-cmd and tracecmd/).
_REFUSAL_RE = re.compile(r"Can't enable ftrace|opening to '.*set_ftrace_filter'|set_ftrace_filter|Operation not permitted")


def trace_cmd_argv(s: Session) -> List[str]:
    """The ``trace-cmd record`` command line for the session's recipe, output and command."""
    r = s.recipe
    argv = [s.pf.tool, "record", "-o", str(s.target)]
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
    if s.opts.command:
        argv += ["--", *s.opts.command]
    return argv


def record_trace_cmd(s: Session) -> int:
    """Record with ``trace-cmd record``; the exit status (the command's, or 0 when stopped by us)."""
    argv = trace_cmd_argv(s)
    s.say(f"recording with trace-cmd record (trace-cmd {s.pf.tool_version}){s.until()}")
    if s.opts.dry_run:
        s.plan(shlex.join(argv) + s.dry_wait_note())
        return 0
    # trace-cmd record changes the top-level buffer's settings and restores them when it ends: one at a time.
    with s.lock.held(s.say, "use the top-level buffer"):
        start = time.monotonic()
        captured: List[str] = []
        # If zlperf is killed, trace-cmd gets the SIGINT that makes it finish its file and restore tracefs,
        # and its messages to zlperf's gone stderr do not kill it first.
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, errors="replace",
                                preexec_fn=die_with_parent(signal.SIGINT, ignore_sigpipe=True))
        relay = threading.Thread(target=_relay, args=(proc.stderr, s.err, captured), daemon=True)
        relay.start()
        # trace-cmd finishes its file on SIGINT; a SIGTERM to zlperf becomes a SIGINT to it.
        with StopSignals(lambda sig: send_signal(proc, signal.SIGINT)) as sigs:
            rc = s.wait(proc, sigs, on_deadline=lambda: send_signal(proc, signal.SIGINT))
        relay.join(timeout=5)
    text = "".join(captured)
    if rc != 0 and time.monotonic() - start < 10 and _REFUSAL_RE.search(text) and not s.target.exists():
        # A refusal the probe did not foresee: trace-cmd dies during setup, before starting the command.
        return record_instance(s, f"trace-cmd record was refused ({last_line(text)})")
    stopped_by_us = sigs.stopped or s.stop_reason == "duration"
    if rc != 0 and not (stopped_by_us and rc in (-signal.SIGINT, -signal.SIGTERM) and s.target.exists()):
        raise RecordError(f"trace-cmd record failed with status {rc}: {last_line(text)}")
    s.outputs.commit()
    s.done(sigs)
    return 0 if stopped_by_us else rc


def _relay(stream, err: TextIO, captured: List[str]) -> None:
    """Copy a child's stderr to ours while keeping it for the refusal check."""
    for line in stream:
        captured.append(line)
        err.write(line)
        err.flush()
