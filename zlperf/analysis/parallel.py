"""The analysis on every core: a recording's CPUs in parts, each part analysed in its own process, the
aggregates merged into one.

A part is a run of neighbouring CPUs (a :class:`PartReader`'s ``split()``: the fast trace.dat reader's and the
perf.data reader's).
What an ABI keeps between chunks is per CPU (pairing), so a part's aggregates are those of its events in
one pass; what ties the parts together is renumbered when they merge: zone codes (each process numbers
the zones it meets) and stream positions (each part counts from 0). Parts merge in CPU order, the order
one pass reads them in, so the result is one pass's. An ABI whose state crosses CPUs (stock kernels: any
CPU's wait names a lock a zone lock) and the rare recording where merging would differ from one pass
(:meth:`~zlperf.analysis.abi.kmem.KmemZoneLockABI.absorb`) are analysed again in one pass.
"""

from __future__ import annotations

__all__ = ["PartAnalysis", "analyze_parts"]

from dataclasses import dataclass
from typing import Any, Collection, Iterator, Optional, Protocol, Sequence

import numpy as np

from zlperf.analysis.aggregate import Aggregate
from zlperf.analysis.core import Analyzer
from zlperf.analysis.model import Zone
from zlperf.analysis.options import AnalysisOptions
from zlperf.events import Chunk, ReadPart, TraceInfo
from zlperf.readers.workers import Workers


class PartReader(Protocol):
    """A reader whose CPUs can be read apart, in forked processes (it inherits the open file)."""

    info: TraceInfo

    def split(self) -> list[ReadPart]:
        """The CPUs in one part per process to use (one part: read in one pass)."""
        ...

    def chunks(self, events: Optional[Collection[str]] = None, buffer: str = "",
               part: Optional[ReadPart] = None) -> Iterator[Chunk]:
        """The chunks of ``part``'s CPUs alone (all CPUs without one)."""
        ...

    def end_parts(self, parts: Sequence[ReadPart]) -> None:
        """Say what reading ``parts`` found, as one pass over them all would."""
        ...


@dataclass
class PartAnalysis:
    """What a worker hands back of its part: the part's aggregates and stream counters, in its own terms."""

    part: ReadPart  #: with the positions it took and what it skipped
    zones: list[Zone]  #: the part's zone codes: index -> zone
    lanes: dict[str, tuple[dict, Aggregate]]  #: mergeable ABI lanes that saw events: key -> (adapter counters, aggregate)
    unmergeable: list[str]  #: lanes that saw events but cannot merge
    event_counts: dict[str, int]
    comms: dict[int, str]  #: pid -> comm learned from the part's chunks
    missed_events: int
    missed_unknown_gaps: int
    missed_by_cpu: dict[int, int]
    first_ts: Optional[int]
    last_ts: Optional[int]
    warnings: list[str]  #: what reading the part warned of


def _analyse_part(reader: PartReader, options: Optional[AnalysisOptions], part: ReadPart) -> PartAnalysis:
    """In a worker: one pass over ``part``, every mergeable lane finished (its open pairs end with the part's
    CPUs). The worker's copy of ``info.warnings`` is emptied first, so it then holds the part's own."""
    warnings = reader.info.warnings
    del warnings[:]
    an = Analyzer(reader.info, options)
    comms: dict[int, str] = {}
    for chunk in reader.chunks(part=part):
        comms.update(chunk.comms)
        an.feed(chunk)
    read_warnings = list(warnings)  # an adapter's end-of-stream notes are the merged stream's to give
    lanes: dict[str, tuple[dict, Aggregate]] = {}
    unmergeable = []
    for adapter, agg in an.lanes:
        if not any(an.event_counts.get(e) for e in adapter.events):
            continue
        if not adapter.mergeable:
            unmergeable.append(adapter.key)
            continue
        an.finish_lane(adapter, agg)
        lanes[adapter.key] = (adapter.counters(), agg)  # type: ignore[attr-defined]
    return PartAnalysis(part, list(an.zones.zones), lanes, unmergeable, an.event_counts, comms,
                        an.missed_events, an.missed_unknown_gaps, an.missed_by_cpu, an.first_ts, an.last_ts,
                        read_warnings)


def _absorb(an: Analyzer, got: PartAnalysis, seq_shift: int, inexact: set[str]) -> None:
    """Merge a part's analysis into ``an`` (which holds the parts before it); lanes that would not equal
    one pass go into ``inexact``."""
    zones = np.array([an.zones.code(z) for z in got.zones] or [-1], dtype=np.int32)
    for name, n in got.event_counts.items():
        an.event_counts[name] = an.event_counts.get(name, 0) + n
    an.comms.update(got.comms)
    an.missed_events += got.missed_events
    an.missed_unknown_gaps += got.missed_unknown_gaps
    for cpu, n in got.missed_by_cpu.items():
        an.missed_by_cpu[cpu] = an.missed_by_cpu.get(cpu, 0) + n
    if got.first_ts is not None and got.last_ts is not None:
        an.first_ts = got.first_ts if an.first_ts is None else min(an.first_ts, got.first_ts)
        an.last_ts = got.last_ts if an.last_ts is None else max(an.last_ts, got.last_ts)
    inexact.update(got.unmergeable)
    for adapter, agg in an.lanes:
        lane = got.lanes.get(adapter.key)
        if lane is None:
            continue
        counters, theirs = lane
        if not adapter.absorb(counters):  # type: ignore[attr-defined]
            inexact.add(adapter.key)
        agg.absorb(theirs, zones, seq_shift)


def analyze_parts(reader: PartReader, options: Optional[AnalysisOptions],
                  parts: Sequence[ReadPart]) -> Optional[Analyzer]:
    """An analyzer holding the whole recording, ``parts[0]`` analysed here and the others in forked workers
    meanwhile; None when the recording needs one pass (see the module), with ``info.warnings`` as before."""
    info = reader.info
    before = list(info.warnings)

    def work(mine: Sequence[ReadPart], emit: Any) -> None:
        for part in mine:
            emit(_analyse_part(reader, options, part))

    an = Analyzer(info, options)
    inexact: set[str] = set()
    done = [parts[0]]
    # Forked before this process reads (and so starts its prefetch thread): a fork copies one thread only.
    with Workers(parts[1:], len(parts) - 1, work) as workers:
        for chunk in reader.chunks(part=parts[0]):
            an.feed(chunk)
        if info.symbols is not None and workers.waiting():  # done first: the symbols the result needs, meanwhile
            info.symbols.parse()
        shift = parts[0].used
        for got in workers.messages(lambda _message: True):
            info.warnings.extend(got.warnings)
            _absorb(an, got, shift, inexact)
            shift += got.part.used
            done.append(got.part)
    reader.end_parts(done)
    adapter, _agg, _found = an.lane()
    if adapter.key in inexact:
        info.warnings[:] = before
        return None
    return an
