"""One live tracing run: stop signals, zone names, the tracefs source and the interval analyzer, set up and torn down.

``zlperf top`` and ``zlperf exporter`` are loops over a :class:`LiveSession`; whatever it set up (the instance,
the enabled events, bpftrace) is undone on every way out: the end, Ctrl-C, SIGTERM, SIGHUP or an error.
"""

from __future__ import annotations

__all__ = ["LiveSession", "Tick", "POLL_SECONDS"]

import os
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from zlperf.analysis.live import Interval, IntervalAnalyzer
from zlperf.analysis.options import AnalysisOptions
from zlperf.errors import warn
from zlperf.live.source import LiveSource, live_tracefs, stale_instances
from zlperf.live.zonenames import ZoneNamer
from zlperf.recipes import Recipe
from zlperf.record.signals import StopSignals

#: Shortest time between two reads of the ring buffers (and how often a stop signal is looked for).
POLL_SECONDS = 0.2
#: Reads come as rarely as this share of a CPU's ring buffer allows at the rate it filled since the last read
#: (a read costs a few milliseconds however little it finds), and at the end of every interval.
FILL_BEFORE_READ = 0.25


@dataclass
class Tick:
    """One interval as a live front end shows it."""

    interval: Interval
    seconds: float  #: wall-clock length of the interval
    ended: float  #: time.time() at its end
    number: int  #: 1 for the first interval


class LiveSession:
    """Trace ``recipe`` live in an instance ``PREFIX-PID``; use as a ``with`` block, then :meth:`wait` and :meth:`take`.

    :attr:`lock` serialises reading and taking between threads (the exporter's HTTP thread reads on scrape).
    """

    def __init__(self, recipe: Recipe, options: Optional[AnalysisOptions] = None, prefix: str = "zlperf-live",
                 say: Callable[[str], None] = lambda m: warn(m)):
        self.recipe = recipe
        self.options = options or AnalysisOptions()
        self.prefix = prefix
        self.say = say
        self.lock = threading.RLock()
        self.source: Optional[LiveSource] = None
        self.analyzer: Optional[IntervalAnalyzer] = None
        self.namer = ZoneNamer(say)
        self.signals = StopSignals(lambda _sig: None)
        self._started = 0.0
        self._polled = 0.0
        self._ticks = 0

    @property
    def stopped(self) -> bool:
        """A stop signal arrived (Ctrl-C, SIGTERM, SIGHUP)."""
        return self.signals.stopped

    def __enter__(self) -> "LiveSession":
        self.signals.__enter__()
        try:
            tfs = live_tracefs()
            for name in stale_instances(tfs, self.prefix):
                self.say(f"stale instance {tfs.root}/instances/{name} from a killed zlperf: rmdir it to free its buffers")
            source = LiveSource(self.recipe, tfs, f"{self.prefix}-{os.getpid()}", self.say)  # checks, touches nothing
            if source.info.symbols is None or not len(source.info.symbols):  # parsed now, not in the first interval
                self.say("/proc/kallsyms shows no addresses (kernel.kptr_restrict=2?): callers show as addresses"
                         + (" and zone-lock waits cannot be told from others' (sysctl kernel.kptr_restrict=1)"
                            if "lock:contention_begin" in self.recipe.events else ""))
            if "lock:contention_begin" in self.recipe.events:
                self.namer.start()
            self.source = source
            source.start()
            self.analyzer = IntervalAnalyzer(source.info, self.options, zone_names=self.namer.names)
            self._started = self._polled = time.monotonic()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            with self.lock:
                try:
                    self.namer.stop()
                finally:
                    if self.source is not None:
                        self.source.close()
        finally:
            self.signals.__exit__()

    # -- the loop ------------------------------------------------------------------------------------------
    def poll(self) -> None:
        """Read what the kernel has and feed it to the analysis."""
        with self.lock:
            assert self.source is not None and self.analyzer is not None
            for chunk in self.source.read():
                self.analyzer.feed(chunk)

    def wait(self, until: float) -> bool:
        """Read the buffers until ``time.monotonic()`` reaches ``until``, as often as their fill rate needs;
        False as soon as a stop signal arrived."""
        while not self.stopped:
            self.poll()
            now = time.monotonic()
            elapsed, self._polled = now - self._polled, now
            if until <= now:
                return True
            assert self.source is not None
            rate = self.source.last_read_bytes / max(elapsed, 1e-3)  # bytes per second on the busiest CPU
            gap = FILL_BEFORE_READ * self.source.buffer_bytes / rate if rate else until - now
            next_read = now + max(POLL_SECONDS, min(gap, until - now))
            while not self.stopped and time.monotonic() < next_read:
                time.sleep(min(POLL_SECONDS, max(0.0, next_read - time.monotonic())))
        return False

    def take(self) -> Tick:
        """Read what is there, then close the interval; the next one starts now."""
        with self.lock:
            self.poll()
            assert self.analyzer is not None
            interval = self.analyzer.take()
            now = time.monotonic()
            seconds, self._started = now - self._started, now
            self._ticks += 1
            return Tick(interval, seconds, time.time(), self._ticks)
