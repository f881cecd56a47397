"""The exporter's state: each interval's result added into monotonic counters and log2 histograms, labels bounded.

Plain data without prometheus_client (:mod:`zlperf.live.exporter` turns it into metric families). Histogram
buckets are exact: counted from each interval's exact distribution, never re-binned from coarser ones.
"""

from __future__ import annotations

__all__ = ["BOUNDS_NS", "OTHER", "Histogram", "ZoneTotals", "LiveTotals"]

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from zlperf.analysis.live import Interval
from zlperf.analysis.result import Stats, ZoneKey
from zlperf.analysis.stats import Distribution

#: Histogram bucket bounds ("le"), ns: powers of two from 128 ns to 8.6 s (a spin on zone->lock takes
#: from ~100 ns to milliseconds; anything longer lands in +Inf and still counts in _sum).
BOUNDS_NS: tuple[int, ...] = tuple(1 << k for k in range(7, 34))
#: The caller label of every caller beyond the first ``max_callers``.
OTHER = "other"


@dataclass
class Histogram:
    """Counts per bucket (value <= BOUNDS_NS[i], the last one +Inf; not cumulative), exact sum and count."""

    buckets: np.ndarray = field(default_factory=lambda: np.zeros(len(BOUNDS_NS) + 1, np.int64))
    sum_ns: int = 0
    count: int = 0

    def add(self, stats: Stats) -> None:
        """Add every value of an exact distribution."""
        if not stats.count:
            return
        if not isinstance(stats, Distribution):
            raise TypeError("live histograms are filled from exact distributions")
        values, counts = stats.table()
        where = np.searchsorted(np.array(BOUNDS_NS, np.uint64), values, side="left")  # first bound >= value
        self.buckets += np.bincount(where, weights=counts, minlength=len(self.buckets)).astype(np.int64)
        self.sum_ns += stats.total
        self.count += stats.count

    def cumulative(self) -> list[int]:
        """Prometheus bucket values: observations <= each bound, then all of them (+Inf)."""
        return np.cumsum(self.buckets).tolist()


def zone_id(key: ZoneKey) -> tuple:
    """What identifies a zone for the whole run (its label may change once its name is learned)."""
    if key.lock_addr is not None:
        return ("lock", key.lock_addr)
    if key.zone_ptr is not None:
        return ("zone", key.zone_ptr)
    return ("name", key.node, key.name)


@dataclass
class ZoneTotals:
    """Counters of one zone since the start."""

    label: str
    contended_events: int = 0
    acquisitions: int = 0
    contended: int = 0
    hold: Histogram = field(default_factory=Histogram)


class LiveTotals:
    """Every interval added up: zones, (zone, caller) wait histograms, losses, the ABI's capabilities.

    At most ``max_callers`` caller names get a label of their own, for the whole run: in each interval the
    callers with the most waits are admitted while there is room; the rest are added up as :data:`OTHER`.
    Admission is never undone, so every series only grows (what a Prometheus counter must do).
    """

    def __init__(self, max_callers: int = 10):
        self.max_callers = max_callers
        self.zones: dict[tuple, ZoneTotals] = {}
        self.waits: dict[tuple[tuple, str], Histogram] = {}
        self.callers: set[str] = set()  #: caller names with a label of their own
        self.lost_events = 0  #: events the kernel said it lost (stored counts)
        self.lost_gaps = 0  #: gaps whose size the kernel did not store
        self.events = 0  #: events decoded
        self.intervals = 0
        self.abi: str = "none"
        self.profile: str = "none"
        self.acquisitions = self.waits_known = self.holds = False  # what the ABI can show

    def caller_label(self, name: str) -> str:
        """The label ``name``'s waits are counted under."""
        return name if name in self.callers else OTHER

    def add(self, interval: Interval) -> None:
        """Fold one interval in."""
        r = interval.result
        caps = r.capabilities
        self.intervals += 1
        self.events += interval.events
        self.lost_events += r.missed.events
        self.lost_gaps += r.missed.unknown_gaps
        if r.events:  # an interval without events keeps the ABI seen before
            self.abi, self.profile = caps.abi, caps.profile
            self.acquisitions, self.waits_known, self.holds = caps.acquisitions, caps.waits, caps.holds
        for z in r.zones:
            key: ZoneKey = z.key  # type: ignore[assignment]
            zt = self.zones.setdefault(zone_id(key), ZoneTotals(key.label))
            zt.label = key.label
            zt.contended_events += z.counts.contended_events
            zt.acquisitions += z.counts.acquisitions
            zt.contended += z.counts.contended
            if caps.holds:
                zt.hold.add(z.hold)
        by_waits = sorted(interval.zone_callers, key=lambda zc: -zc.group.wait.count)
        for zc in by_waits:
            name = zc.group.key.symbol  # type: ignore[union-attr]
            if name not in self.callers and len(self.callers) < self.max_callers and zc.group.wait.count:
                self.callers.add(name)
        for zc in interval.zone_callers:
            if not zc.group.wait.count:
                continue
            zid = zone_id(zc.zone)
            self.zones.setdefault(zid, ZoneTotals(zc.zone.label))
            label = self.caller_label(zc.group.key.symbol)  # type: ignore[union-attr]
            self.waits.setdefault((zid, label), Histogram()).add(zc.group.wait)

    def zone_label(self, zid: tuple) -> str:
        """The zone's label now."""
        return self.zones[zid].label

    def total_waits(self, zone: Optional[tuple] = None) -> int:
        """Waits counted in the histograms (one zone, or all)."""
        return sum(h.count for (z, _), h in self.waits.items() if zone is None or z == zone)
