"""Stop signals during a recording: Ctrl-C, SIGTERM and SIGHUP end it cleanly; children are wound down.

A Ctrl-C typed at a terminal reaches the whole foreground job (zlperf and its children); a signal sent to
zlperf alone is forwarded. A child that does not stop gets SIGTERM, then SIGKILL, a few seconds apart.
"""

from __future__ import annotations

__all__ = ["STOP_SIGNALS", "StopSignals", "foreground_of_terminal", "send_signal", "finish_child"]

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
