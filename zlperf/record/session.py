"""One recording in progress: its options, messages, the command it runs, and waiting for the end.

Every backend uses a :class:`Session`: it prints one-line statements, runs or (``--dry-run``) prints
commands, starts the user's command and waits for it, the duration or a stop signal.
"""

from __future__ import annotations

__all__ = ["Session", "last_line"]

import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Optional, Sequence, TextIO

from zlperf.errors import RecordError, warn
from zlperf.record.guard import RecorderLock, RecorderState
from zlperf.record.options import RecordOptions
from zlperf.record.outputs import Outputs
from zlperf.record.preflight import Preflight
from zlperf.record.signals import (StopSignals, die_with_parent, exit_status, finish_child, foreground_of_terminal,
                                  send_signal)


class Session:
    """State shared by the recorder and its backends for one ``zlperf record``."""

    def __init__(self, opts: RecordOptions, pf: Preflight, out: TextIO, err: TextIO):
        self.opts = opts
        self.pf = pf
        self.recipe = opts.recipe
        self.out = out
        self.err = err
        self.outputs = Outputs(opts)  #: OUT and the files beside it
        self.lock = RecorderLock()  #: serialises steps that touch machine-wide settings
        self.state: Optional[RecorderState] = None  #: what a later run repairs if this one is killed
        self.child: Optional[subprocess.Popen] = None  #: the user's command, once started
        self.stop_reason: Optional[str] = None  #: "signal" or "duration" once either ended the recording
        self.forwarded = False  #: a stop signal was already passed on to the command

    @property
    def target(self) -> Path:
        """The file the backend writes: inside the private folder (renamed to OUT at the end); OUT in a dry run."""
        return self.outputs.work_file if self.outputs.workdir is not None else self.outputs.final

    def remember(self, **values: object) -> None:
        """Note in the state file what a later run must repair should this one be killed."""
        if self.state is not None:
            self.state.update(**values)

    # -- output
    def say(self, msg: str) -> None:
        """A one-line statement on stderr: ``zlperf: MSG``."""
        print(f"zlperf: {msg}", file=self.err, flush=True)

    def plan(self, line: str) -> None:
        """A dry-run line: the exact command or tracefs write."""
        print(line, file=self.out, flush=True)

    def run_cmd(self, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        """Run ``argv`` capturing its output (printed instead under --dry-run)."""
        if self.opts.dry_run:
            self.plan(shlex.join(argv))
            return subprocess.CompletedProcess(list(argv), 0, "", "")
        return subprocess.run(list(argv), capture_output=True, text=True, **kw)

    # -- the user's command
    def run_workload(self, sigs: StopSignals) -> int:
        """Run the command (or wait the duration / until stopped); the command's exit status, or 0."""
        if self.opts.dry_run:
            if self.opts.command:
                self.plan(shlex.join(self.opts.command) + self.dry_wait_note())
            else:
                secs = self.opts.seconds
                self.plan(f"sleep {secs:g}" if secs else "# wait for Ctrl-C")
            return 0
        if self.opts.command:
            try:
                # SIGTERM to the command if zlperf is killed: without its recorder it would run on for nothing.
                self.child = subprocess.Popen(self.opts.command, preexec_fn=die_with_parent(signal.SIGTERM))
            except OSError as exc:
                raise RecordError(f"cannot run {self.opts.command[0]}: {exc.strerror}")
            rc = self.wait(self.child, sigs, on_deadline=lambda: None)
            if rc is None or self.child.poll() is None:
                first = None if (self.forwarded or self._terminal_sigint(sigs)) else signal.SIGINT
                rc = finish_child(self.child, first, self.say)
            if rc != 0 and not sigs.stopped and self.stop_reason != "duration":
                if rc < 0:
                    warn(f"command {self.opts.command[0]} was killed by {signal.Signals(-rc).name}")
                else:
                    warn(f"command {self.opts.command[0]} exited with status {rc}")
                return exit_status(rc)
            return 0
        self.wait(None, sigs, on_deadline=lambda: None)
        return 0

    def stop_command(self) -> None:
        """Never leave the command behind: wind it down if it still runs."""
        if self.child is not None and self.child.poll() is None:
            finish_child(self.child, signal.SIGTERM, self.say)

    def _terminal_sigint(self, sigs: StopSignals) -> bool:
        # A Ctrl-C typed at the terminal went to the command as well: give it the chance to end on its own.
        return bool(sigs.received) and sigs.received[0] == signal.SIGINT and foreground_of_terminal()

    def on_stop_signal(self, signum: int) -> None:
        """Pass a stop signal on to the command, unless the terminal delivered it there already."""
        if self.child is None or self.child.poll() is not None:
            return
        if signum == signal.SIGINT and foreground_of_terminal():
            return  # the terminal delivered it to the command too
        self.forwarded = True
        send_signal(self.child, signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)

    # -- waiting
    def wait(self, proc: Optional[subprocess.Popen], sigs: StopSignals, on_deadline: Callable[[], None]) -> Optional[int]:
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

    # -- wording
    def until(self) -> str:
        """How the recording ends, for the one-line statement of the path taken."""
        if self.opts.command:
            limit = f", at most {self.opts.duration:g} s" if self.opts.duration else ""
            return f", while {shlex.join(self.opts.command)} runs{limit}"
        if self.opts.seconds:
            return f", for {self.opts.seconds:g} s"
        return ", until Ctrl-C"

    def dry_wait_note(self) -> str:
        """The comment a dry-run line gets when zlperf would stop it after a time."""
        if self.opts.command and self.opts.duration:
            return f"   # SIGINT after {self.opts.duration:g} s"
        if not self.opts.command and self.opts.seconds:
            return f"   # SIGINT after {self.opts.seconds:g} s"
        return ""

    def done(self, sigs: StopSignals) -> None:
        """Say what was written."""
        if self.opts.dry_run:
            return
        out = self.outputs.final
        size = out.stat().st_size if out.exists() else 0
        stopped = " (stopped by a signal; the file is complete)" if sigs.stopped else ""
        self.say(f"wrote {out} ({size / 1e6:.1f} MB){stopped}")


def last_line(text: str, count: int = 1) -> str:
    """The last ``count`` non-empty lines of a tool's output joined with '; ', for one-line errors."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines[-count:]) if lines else "no message"
