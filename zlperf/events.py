"""The event model every reader produces and the analysis consumes.

Readers (trace.dat fast reader, libtracecmd, perf.data) all yield :class:`Chunk` objects
holding one columnar :class:`EventBatch` per event name, so the analysis never asks where
events came from.

Ordering contract (the analysis pairs events per CPU and relies on it):
- ``seq`` numbers the events in the reader's stream; for one CPU it increases in the
  order the ring buffer recorded them.
- Once a chunk has been yielded, no later chunk holds an event of the same CPU with a
  smaller ``seq``. Within a chunk, sort by (cpu, seq) to get each CPU's stream.

Gaps reported by the kernel (ring-buffer pages flagged "missed events") arrive as a batch
named :data:`MISSED_EVENTS` with a ``count`` field (-1 when the kernel did not store the
number), placed in the stream just before the first event after the gap.
"""

from __future__ import annotations

__all__ = ["MISSED_EVENTS", "EventBatch", "Chunk", "CpuStats", "TraceInfo", "TraceReader", "ReadPart"]

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Collection, Iterator, Mapping, Optional, Protocol, Sequence

import numpy as np

if TYPE_CHECKING:
    from zlperf.formats import EventFormat
    from zlperf.kallsyms import Kallsyms

#: Pseudo-event for a ring-buffer gap: fields {"count": int64, -1 = unknown}.
MISSED_EVENTS = "zlperf:missed_events"


@dataclass
class EventBatch:
    """Events of one type in columns; row i of every array is event i.

    Field columns follow the event's format: integers keep their size and signedness
    (``bool`` is uint8), strings (``__data_loc char[]``, ``char x[N]``) are object
    arrays of ``str``, fixed arrays (``unsigned long caller[8]``) are 2-D. The ftrace
    ``kernel_stack`` event's ``caller`` is 2-D uint64, innermost frame first, zero-padded
    past each stack's end. Common fields (``common_flags``, ...) are included.
    """

    name: str  #: "system:event", e.g. "kmem:mm_zone_locked"
    ts: np.ndarray  #: uint64, trace-clock nanoseconds
    cpu: np.ndarray  #: int32
    pid: np.ndarray  #: int32 (common_pid)
    seq: np.ndarray  #: int64, stream position (see module docstring)
    fields: dict[str, np.ndarray] = field(default_factory=dict)
    #: Optional dictionary encoding of string fields: name -> (int32 codes, object array of
    #: values) with ``fields[name] == values[codes]``. Readers that intern strings fill it.
    dictionary: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def categorical(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(codes, values)`` of string field ``name``, from :attr:`dictionary` or computed once."""
        enc = self.dictionary.get(name)
        if enc is None:
            enc = self.dictionary[name] = _dictionary_encode(self.fields[name])
        return enc


def _dictionary_encode(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Codes and distinct values of an object column, by the readers' one string interner."""
    from zlperf.readers.strings import encode_column  # imported here: readers import this module

    return encode_column(column)


@dataclass
class ReadPart:
    """Some CPUs of a recording, read on their own (a reader's ``split()``), perhaps in another process, and
    analysed apart (:mod:`zlperf.analysis.parallel`).

    Stream positions a reader numbers per part start at 0 (``used`` says how many the part took, so the
    caller shifts the next parts); what reading them found to skip is kept in ``skips`` for the reader's
    ``end_parts()``, not warned of; notes about the whole recording are the ``first`` part's to give.
    """

    cpus: tuple[int, ...]
    size: int  #: how much there is to read (bytes of pages, or samples)
    first: bool = False  #: the first part of the recording
    used: int = 0  #: stream positions taken, once read (0 when positions are the recording's own)
    skips: tuple = field(default_factory=lambda: ({}, {}))  #: records skipped for want of a format, once read


def balanced_parts(sizes: Sequence[tuple[int, int]], n: int) -> list[ReadPart]:
    """``(cpu, size)`` pairs (in CPU order) in at most ``n`` runs of neighbouring CPUs of about equal size."""
    total = sum(size for _cpu, size in sizes)
    parts: list[ReadPart] = []
    group: list[tuple[int, int]] = []
    done = 0
    for i, (cpu, size) in enumerate(sizes):
        group.append((cpu, size))
        done += size
        left = len(sizes) - i - 1
        # Close a part once it holds its share (and enough CPUs are left for the others).
        if len(parts) < n - 1 and done >= total * (len(parts) + 1) / n and left >= n - 1 - len(parts):
            parts.append(ReadPart(tuple(c for c, _s in group), sum(s for _c, s in group), first=not parts))
            group = []
    if group or not parts:
        parts.append(ReadPart(tuple(c for c, _s in group), sum(s for _c, s in group), first=not parts))
    return parts


@dataclass
class Chunk:
    """A slice of the event stream: one batch per event name present in it."""

    batches: dict[str, EventBatch] = field(default_factory=dict)
    #: Task names learned with these events (pid -> comm), for sources that name tasks as they
    #: go (perf script's common_comm, libtracecmd's per-record comm); later names win.
    comms: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(b) for b in self.batches.values())


@dataclass
class CpuStats:
    """Kernel ring-buffer statistics saved in the file at the end of recording (CPUSTAT)."""

    cpu: int
    entries: Optional[int] = None  #: left unread in the kernel buffer (lost to the file)
    overrun: Optional[int] = None  #: overwritten before being read (lost)
    commit_overrun: Optional[int] = None
    dropped_events: Optional[int] = None
    read_events: Optional[int] = None


@dataclass(frozen=True)
class TraceInfo:
    """What a trace file says about itself, independent of its events.

    Built once when the file is opened (symbols and zone names included, see
    :func:`zlperf.readers.open_trace`) and never reassigned afterwards. ``warnings`` is the
    one list that grows: readers add what they lose while reading.
    """

    path: str
    format: str  #: e.g. "trace.dat v7 (zstd)", "trace.dat v6", "perf.data"
    version: Optional[int] = None
    compression: Optional[str] = None
    clock: Optional[str] = None
    long_size: int = 8
    page_size: int = 4096
    cpus: int = 0
    buffers: tuple[str, ...] = ()  #: instance names, "" = top
    formats: Mapping[str, "EventFormat"] = field(default_factory=dict)  #: "system:event" ->
    symbols: Optional["Kallsyms"] = None
    cmdlines: Mapping[int, str] = field(default_factory=dict)  #: pid -> comm
    cpu_stats: Mapping[int, CpuStats] = field(default_factory=dict)
    uname: Optional[str] = None
    warnings: list[str] = field(default_factory=list)  #: what was lost or assumed
    #: lock address -> (node, zone name) of zone locks, when the recorder could name them
    #: (stock kernels: lock:contention_* carry only the address); read from the sidecar file.
    zone_locks: Mapping[int, tuple[int, str]] = field(default_factory=dict)


class TraceReader(Protocol):
    """One interface over every trace source; a context manager that closes on exit."""

    info: TraceInfo

    def chunks(
        self, events: Optional[Collection[str]] = None, buffer: str = ""
    ) -> Iterator[Chunk]:
        """Yield the stream of ``buffer`` in chunks; ``events`` limits which names are decoded.

        :data:`MISSED_EVENTS` is always delivered. Problems met while reading are added
        to ``info.warnings`` (and the reader goes on with what it can read).
        """
        ...

    def close(self) -> None:
        """Release files and libraries."""
        ...

    def __enter__(self) -> "TraceReader":
        ...

    def __exit__(self, *exc: object) -> None:
        ...
