"""Stop signals during a recording: Ctrl-C, SIGTERM and SIGHUP end it cleanly; children are wound down.

A Ctrl-C typed at a terminal reaches the whole foreground job (zlperf and its children); a signal sent to
zlperf alone is forwarded. A child that does not stop gets SIGTERM, then SIGKILL, a few seconds apart.
"""

from __future__ import annotations

__all__ = ["STOP_SIGNALS", "StopSignals", "foreground_of_terminal", "send_signal", "finish_child", "die_with_parent",
           "exit_status"]

import ctypes
import os
import signal
import subprocess
from typing import Callable, Dict, List, Optional

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopSignals:
    """Catch stop signals for the duration of a recording and hand them to ``on_signal``."""

    def __init__(self, on_signal: Callable[[int], None]):
        self.on_signal = on_signal
        self.received: List[int] = []
        self._old: Dict[int, object] = {}

    def __enter__(self) -> "StopSignals":
        try:
            for s in STOP_SIGNALS:
                if s == signal.SIGHUP and signal.getsignal(s) == signal.SIG_IGN:
                    continue  # started under nohup: a hangup must not stop the recording
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
        """True once a stop signal arrived."""
        return bool(self.received)


def foreground_of_terminal() -> bool:
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


def send_signal(proc: Optional[subprocess.Popen], sig: int) -> None:
    """Send ``sig`` to ``proc`` if it is still running."""
    if proc is not None and proc.poll() is None:
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            pass


def finish_child(proc: subprocess.Popen, first: Optional[int], say: Callable[[str], None]) -> int:
    """Make sure ``proc`` ends: ``first`` signal (if any), then SIGTERM, then SIGKILL, a few seconds apart."""
    steps = [s for s in (first, signal.SIGTERM, signal.SIGKILL) if s is not None]
    for i, sig in enumerate(steps):
        if proc.poll() is not None:
            break
        if i > 0:
            say(f"command {proc.args[0]} still running: sending {signal.Signals(sig).name}")
        send_signal(proc, sig)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


_PR_SET_PDEATHSIG = 1  # include/uapi/linux/prctl.h
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it
except (OSError, AttributeError):
    _prctl = None


def die_with_parent(sig: int, ignore_sigpipe: bool = False) -> Callable[[], None]:
    """A ``preexec_fn`` making the child get ``sig`` when zlperf dies (PR_SET_PDEATHSIG), so that no
    tool outlives a killed zlperf; with ``ignore_sigpipe`` its writes to a closed pipe fail instead of
    killing it (a tool finishing its file must not die on a message to zlperf's gone stderr)."""

    def setup() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
        if ignore_sigpipe:
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)

    return setup


def exit_status(returncode: int) -> int:
    """A child's status as a shell gives it: 128 + N for a child killed by signal N."""
    return 128 - returncode if returncode < 0 else returncode
