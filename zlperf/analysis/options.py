"""What to analyse: the options every front end passes to the analysis core, and their names.

Kept apart from the core so that ABI adapters, the aggregation and the front ends can all import
them without importing each other.
"""

from __future__ import annotations

__all__ = ["AnalysisOptions", "ABIS", "DIMENSIONS"]

from dataclasses import dataclass
from typing import Optional

#: ABI names for :attr:`AnalysisOptions.abi`, in the order they are preferred when a file has several.
ABIS = ("kmem", "series", "stock")

#: Dimensions a report is grouped by -> the observation column holding each row's key.
DIMENSIONS = {"zone": "zone", "caller": "caller", "cpu": "cpu", "task": "pid"}


@dataclass
class AnalysisOptions:
    """A time window (trace-clock ns), one zone, how many worst cases, which ABI and frame table."""

    since_ns: Optional[int] = None
    until_ns: Optional[int] = None
    zone: Optional[str] = None  #: label "NODE:NAME" (or "lock@0x..." / "zone@0x..." for address-only zones)
    top: int = 10
    bin_ns: int = 1_000_000  #: finest timeline resolution (it coarsens as the recording grows)
    #: stock kernels: function -> why it marks a zone->lock wait; replaces abi.stock_frames.ZONE_LOCK_FRAMES
    zone_lock_frames: Optional[dict[str, str]] = None
    abi: str = "auto"  #: one of :data:`ABIS` to read that ABI when a file has several; "auto": the first seen
    #: stock ABI: most waits kept while their lock is not (yet) known as a zone lock; None keeps all until the
    #: end (a recording); live streams bound it, as waits on other locks (lruvec, mutexes) never stop coming
    max_held_waits: Optional[int] = None
