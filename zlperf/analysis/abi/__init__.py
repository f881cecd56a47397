"""Event ABIs: each turns one family of zone-lock events into the same :class:`Observations`.

Three ABIs exist in the wild, each with its own adapter module: the zone-lock tracepoint patch's
``kmem:mm_zone_lock_*`` events (:mod:`.kmem`), the rival ``zone_lock:*`` series (:mod:`.series`)
and stock kernels' ``lock:contention_*`` found by stack frames (:mod:`.stock`). They all implement
:class:`AbiAdapter`, so the core and every exporter treat them alike.
"""

from __future__ import annotations

__all__ = ["AbiAdapter", "ADAPTERS", "make_adapters", "concerns"]

from typing import TYPE_CHECKING, ClassVar, Mapping, Protocol

from zlperf.analysis.abi.kmem import KmemZoneLockABI
from zlperf.analysis.abi.series import ZoneLockSeriesABI
from zlperf.analysis.abi.stock import StockContentionABI
from zlperf.events import MISSED_EVENTS

if TYPE_CHECKING:
    from zlperf.analysis.model import Capabilities, Observations, ZoneTable
    from zlperf.analysis.options import AnalysisOptions
    from zlperf.events import Chunk, TraceInfo


class AbiAdapter(Protocol):
    """One event ABI -> :class:`~zlperf.analysis.model.Observations`, chunk by chunk.

    Little is kept between chunks: pending pairs (one per CPU) and whatever the ABI cannot
    decide until later events arrive, never the events themselves.
    """

    key: ClassVar[str]  #: short name used by ``--abi`` (see :data:`zlperf.analysis.options.ABIS`)
    name: ClassVar[str]  #: what the report header calls it
    events: ClassVar[tuple[str, ...]]  #: "system:event" names this ABI reads
    #: whether CPUs analysed apart (in other processes) merge: then the adapter has ``counters()`` and
    #: ``absorb(counters) -> bool`` (see :mod:`zlperf.analysis.parallel`)
    mergeable: ClassVar[bool]

    def __init__(self, zones: "ZoneTable", info: "TraceInfo", options: "AnalysisOptions") -> None: ...

    def observe(self, chunk: "Chunk") -> "Observations":
        """Normalise one chunk (pairing state carries over to the next)."""
        ...

    def finish(self) -> "Observations":
        """Close the stream: what was still open becomes unreleased / unfinished."""
        ...

    def capabilities(self, event_counts: Mapping[str, int]) -> "Capabilities":
        """What the recorded events allow the report to show, and why not the rest."""
        ...


#: Every adapter, in the order of preference when a file holds several ABIs.
ADAPTERS: tuple[type[AbiAdapter], ...] = (KmemZoneLockABI, ZoneLockSeriesABI, StockContentionABI)


def make_adapters(zones: "ZoneTable", info: "TraceInfo", options: "AnalysisOptions") -> list[AbiAdapter]:
    """One fresh adapter per ABI, sharing one zone table."""
    return [cls(zones, info, options) for cls in ADAPTERS]


def concerns(adapter: AbiAdapter, chunk: "Chunk") -> bool:
    """Whether ``chunk`` can matter to ``adapter``: its events, ring-buffer gaps, or kernel stacks (the
    stack of an event that ended the previous chunk may open this one)."""
    names = chunk.batches
    return (MISSED_EVENTS in names or any(name in names for name in adapter.events)
            or any(name.endswith(":kernel_stack") for name in names))
