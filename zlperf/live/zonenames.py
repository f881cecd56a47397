"""Zone names while tracing live: the recorder's bpftrace side program, run for as long as zlperf traces.

lock:contention_* carry only ``&zone->lock``; the side program reads node and zone name behind each lock
address the first time it contends after it attached, and :meth:`ZoneNamer.names` hands out what it found.
"""

from __future__ import annotations

__all__ = ["ZoneNamer"]

from typing import Callable, Optional

from zlperf.errors import ZlperfError
from zlperf.record.zonenames import ZoneLockWatcher, side_channel_unavailable, zone_layout


class ZoneNamer:
    """Lock address -> (node, zone name), learned while tracing; :meth:`names` is always safe to call."""

    def __init__(self, say: Callable[[str], None]):
        self.say = say
        self.watcher: Optional[ZoneLockWatcher] = None
        self.why_not: Optional[str] = None  #: why zones show as lock addresses (None: the side program runs)
        self._final: dict[int, tuple[int, str]] = {}

    def start(self) -> None:
        """Start the side program and wait until it is attached (a second or two); on failure say why, go on.

        It is started from the main thread: it dies with the thread that started it (PR_SET_PDEATHSIG), so
        that it never outlives zlperf.
        """
        why = side_channel_unavailable()
        watcher = None
        if why is None:
            try:
                watcher = ZoneLockWatcher(zone_layout())
                watcher.start()
            except ZlperfError as exc:
                why = str(exc)
        if why is not None:
            self.why_not = why
            self.say(f"zone locks show as addresses: {why}")
            return
        self.watcher = watcher

    def names(self) -> dict[int, tuple[int, str]]:
        """What is known so far."""
        return dict(self.watcher.locks) if self.watcher is not None else dict(self._final)

    def stop(self) -> None:
        """Stop the side program (safe to call twice)."""
        if self.watcher is not None:
            self._final = self.watcher.stop()
            self.watcher = None
