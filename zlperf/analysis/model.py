"""The normalised facts the aggregator reads, whatever event ABI produced them.

An ABI adapter (:mod:`zlperf.analysis.abi`) turns each reader :class:`~zlperf.events.Chunk` into an
:class:`Observations`: tables (dicts of equal-length numpy columns) of contended events,
acquisitions, waits, holds and pairing anomalies, with zones as small integer codes into a
:class:`ZoneTable`.
"""

from __future__ import annotations

__all__ = ["Table", "Zone", "ZoneTable", "Observations", "Capabilities", "table_len", "has_rows"]

from dataclasses import dataclass, field
from typing import Mapping, Optional, TypeGuard

import numpy as np

#: A table: column name -> numpy array, all of one length.
Table = dict[str, np.ndarray]

def table_len(table: Optional[Table]) -> int:
    """Rows in ``table`` (0 for None)."""
    return 0 if not table else len(table["ts"])


def has_rows(table: Optional[Table]) -> TypeGuard[Table]:
    """Whether ``table`` is there and holds a row (what ``table_len`` says, as type checkers understand it)."""
    return table_len(table) > 0


@dataclass(frozen=True)
class Zone:
    """A zone lock as the recording identifies it: (node, name) and/or a lock address."""

    node: Optional[int] = None
    name: Optional[str] = None
    lock_addr: Optional[int] = None  #: &zone->lock (lock:contention_* events)
    zone_ptr: Optional[int] = None  #: struct zone * (zone_lock:* events)

    @property
    def label(self) -> str:
        """``1:Normal``, or the lock address when node and name are unknown."""
        if self.node is not None and self.name is not None:
            return f"{self.node}:{self.name}"
        if self.zone_ptr is not None:
            return f"zone@{self.zone_ptr:#x}"
        if self.lock_addr is not None:
            return f"lock@{self.lock_addr:#x}"
        return "?"


class ZoneTable:
    """Zone <-> small integer code, assigned in order of first sight."""

    def __init__(self) -> None:
        self.zones: list[Zone] = []
        self._codes: dict[Zone, int] = {}

    def code(self, zone: Zone) -> int:
        """The code of ``zone``, assigning a new one if unseen."""
        c = self._codes.get(zone)
        if c is None:
            c = self._codes[zone] = len(self.zones)
            self.zones.append(zone)
        return c

    def name_locks(self, named: Mapping[int, tuple[int, str]]) -> None:
        """Give zones known only by lock address their (node, name) from ``named`` (address -> node, name).

        A live stream learns zone names while it runs (:mod:`zlperf.live.zonenames`); its adapters code zones
        by address alone, and renaming keeps their codes, so a zone never splits into two.
        """
        for code, z in enumerate(self.zones):
            if z.node is None and z.lock_addr is not None and z.lock_addr in named:
                node, name = named[z.lock_addr]
                renamed = Zone(node=node, name=name, lock_addr=z.lock_addr, zone_ptr=z.zone_ptr)
                self.zones[code] = renamed
                self._codes.setdefault(renamed, code)

    def find(self, label: str) -> Optional[int]:
        """Code of the zone whose label is ``label`` (e.g. ``1:Normal``), or None."""
        for i, z in enumerate(self.zones):
            if z.label == label:
                return i
        return None


@dataclass
class Capabilities:
    """What a recording can answer, and why not where it cannot."""

    abi: str  #: e.g. "kmem:mm_zone_lock_* (zone-lock tracepoint patch)"
    profile: str  #: which recipe the recorded events look like: minimal, wait-time, hold-time, stock, ...
    contended_events: bool = False
    acquisitions: bool = False
    waits: bool = False
    holds: bool = False
    contended_flag: bool = True  #: acquisitions say whether they were contended
    cannot: list[str] = field(default_factory=list)  #: plain sentences: what this file cannot show
    notes: list[str] = field(default_factory=list)  #: what was inferred or left out, and why
    #: what a "wait" is in this ABI (defaults from ``contended_flag``)
    wait_is: str = ""

    def __post_init__(self) -> None:
        if not self.wait_is:
            self.wait_is = ("contended acquisitions' spin (wait_ns)" if self.contended_flag
                            else "every acquisition: start_locking -> acquire_returned")


@dataclass
class Observations:
    """One chunk's normalised zone-lock facts. None = this ABI cannot observe it.

    contended:  ts cpu pid zone caller [stack]              (a contended-lock event; its kernel stack
                                                            as uint64 frames, innermost first, if recorded)
    acquired:   ts cpu pid zone caller count contended      (every traced acquisition)
    waits:      ts cpu pid zone caller wait_ns              (one row per contended wait; ts = when it ended,
                                                            i.e. the acquisition, in every ABI)
    holds:      ts cpu pid zone caller count hold_ns        (ts and caller of the acquisition)
    unmatched:  ts cpu pid zone caller                      (a release with no acquisition before it)
    unreleased: ts cpu pid zone caller                      (an acquisition never seen released)
    broken:     ts cpu pid zone caller                      (pair sides next to missed events)
    releases:   every release with its holder, see zlperf.analysis.holders.RELEASE_COLUMNS (not windowed:
                a wait's holder may have released the lock before the window began)

    ``waits`` of ABIs with releases also carry ``seq`` (the acquisition's stream position), and so do their
    ``acquired``, ``holds`` (the acquisition's), ``unmatched``, ``unreleased`` and ``broken`` rows: an exporter
    joins a hold, a wait and a holder to their acquisition by it.
    """

    contended: Optional[Table] = None
    acquired: Optional[Table] = None
    waits: Optional[Table] = None
    holds: Optional[Table] = None
    unmatched: Optional[Table] = None
    unreleased: Optional[Table] = None
    broken: Optional[Table] = None
    releases: Optional[Table] = None
    #: A hint, not a table: when set to k, ``holds`` rows from k on are ``acquired``'s first rows, in order (the
    #: usual chunk), so their group codes are the acquisitions' (k: holds of acquisitions of earlier chunks).
    holds_from_acquired: Optional[int] = None

    TABLES = ("contended", "acquired", "waits", "holds", "unmatched", "unreleased", "broken", "releases")
