"""A run of ring-buffer pages of one CPU to a :class:`~zlperf.events.Chunk`: records walked, ids read, fields gathered.

The one page->chunk path: the fast trace.dat reader feeds it the pages of a file, ``zlperf top`` and the
exporter the pages they read from tracefs's ``per_cpu/cpuN/trace_pipe_raw`` (:mod:`zlperf.live.source`).
"""

from __future__ import annotations

__all__ = ["RunDecoder", "DecodedChunk"]

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from zlperf.arrays import distinct
from zlperf.events import MISSED_EVENTS, Chunk, EventBatch
from zlperf.formats import EventFormat, FieldFormat, HeaderPage
from zlperf.readers.tracedat.fields import gather_fields, gathered_columns, read_type_ids, walk_slot
from zlperf.readers.tracedat.native import Gathered, Slot
from zlperf.readers.tracedat.ringbuffer import decode_pages

#: Event ids that may be compared with ``==`` in one pass each before switching to a sort.
_MASK_TYPES = 12
#: Event ids whose fields the native walk gathers as it goes (those of the runs decoded before).
_WALK_SLOTS = 16
#: Widest fixed part the walk copies per record (real events: tens of bytes); wider ones stay with numpy.
_WALK_REACH = 1024


@dataclass
class DecodedChunk:
    """The chunk of one run, the stream positions it took, and what was wrong with its pages."""

    chunk: Chunk
    used: int  #: stream positions taken (events and gaps): the next run's ``seq0`` is ``seq0 + used``
    problems: list[tuple[int, str]] = field(default_factory=list)  #: (page index in the run, what was wrong)


class RunDecoder:
    """Decodes runs of pages of one ring buffer (fixed page layout, byte order and event formats).

    ``lookup`` gives the format of an event id to decode, or None to skip its records; ``skipped(id, n)``
    is told of every ``n`` records skipped that way (the caller says which were wanted and why).
    ``notes`` receives what field gathering had to cut (damaged lengths).
    """

    def __init__(self, header_page: HeaderPage, type_field: Optional[FieldFormat],
                 lookup: Callable[[int], Optional[EventFormat]], skipped: Callable[[int, int], None], *,
                 big: bool = False, ts_offset: int = 0, notes: Optional[list] = None):
        self.header_page = header_page
        self.type_field = type_field
        self.lookup = lookup
        self.skipped = skipped
        self.big = big
        self.ts_offset = ts_offset
        self.notes = notes
        self._slots: list[Slot] = []  # the event ids met so far, for the native walk to gather

    def decode(self, data: np.ndarray, page_size: int, cpu: int, seq0: int, gap_before: bool = False) -> DecodedChunk:
        """The chunk of the whole pages in ``data`` (uint8) of CPU ``cpu``; stream positions from ``seq0``."""
        big = self.big
        tf = self.type_field
        # The native walk reads 16-bit event ids (common_type is an unsigned short) as it goes.
        type_off = tf.offset if tf is not None and tf.size == 2 and tf.offset >= 0 else -1
        dec = decode_pages(data, page_size, self.header_page, big, gap_before, type_off=type_off,
                           slots=self._slots if type_off >= 0 else None)
        planned: dict[int, Gathered] = {}
        if dec.gathered is not None:
            planned = {slot.event_id: g for slot, g in zip(self._slots, dec.gathered) if g is not None}
        n = dec.off.shape[0]
        nm = dec.missed_index.shape[0]
        chunk = Chunk()
        if self.ts_offset:
            dec.ts += np.uint64(self.ts_offset & 0xFFFFFFFFFFFFFFFF)
        ev_seq = seq0 + dec.index if nm else None  # without gaps, an event's position is its index
        if nm:
            chunk.batches[MISSED_EVENTS] = EventBatch(
                MISSED_EVENTS, dec.missed_ts, np.full(nm, cpu, np.int32), np.full(nm, -1, np.int32),
                seq0 + dec.missed_index, {"count": dec.missed_count.astype(np.int64)})
        used = (int(dec.index.max()) + 1 if n else 0) if nm else n
        if nm:
            used = max(used, int(dec.missed_index.max()) + 1)
        out = DecodedChunk(chunk, used, dec.problems)
        if n == 0 or self.type_field is None:
            return out
        types = dec.types if dec.types is not None else read_type_ids(data, dec.off, self.type_field, big)
        # Event ids are small (u16 common_type); a corrupt format can make them anything.
        counts = np.bincount(types, minlength=1) if int(types.max()) < 1 << 16 else None
        present = np.flatnonzero(counts) if counts is not None else distinct(types)
        for slot in self._slots:  # the next run's rows for each slot: as many as this run's mix would need
            seen = int(counts[slot.event_id]) if counts is not None and slot.event_id < len(counts) else 0
            slot.per_byte = seen / max(len(data), 1)
        if present.size <= _MASK_TYPES:
            groups = [(int(t), planned[t].rec if t in planned else np.flatnonzero(types == t))
                      for t in present.tolist()]
        else:
            order = np.argsort(types, kind="stable")
            st = types[order]
            cuts = np.flatnonzero(st[1:] != st[:-1]) + 1
            groups = [(int(st[s]), idx) for s, idx in zip(np.concatenate(([0], cuts)).tolist(),
                                                          np.split(order, cuts))]
        for eid, idx in groups:
            ef = self.lookup(eid)
            if ef is None:
                self.skipped(eid, idx.shape[0])
                continue
            dictionary: dict = {}
            gathered = planned.get(eid)
            cols = gathered_columns(gathered, ef, big, dictionary) if gathered is not None else None
            if cols is None:
                cols = gather_fields(data, dec.off[idx], dec.length[idx], ef, big, self.header_page.commit_size,
                                     dictionary, self.notes, gathered)
                if (gathered is None and type_off >= 0 and len(self._slots) < _WALK_SLOTS
                        and all(slot.event_id != eid for slot in self._slots)):
                    slot = walk_slot(ef, eid)  # the next runs' walk gathers the records of this id
                    slot.per_byte = idx.shape[0] / max(len(data), 1)
                    if slot.reach <= _WALK_REACH:
                        self._slots = self._slots + [slot]
            pid_col = cols.get("common_pid")
            # common_pid is already int32 in every kernel's format: the same array, not a copy.
            pid = pid_col.astype(np.int32, copy=False) if pid_col is not None else np.full(idx.shape[0], -1, np.int32)
            chunk.batches[ef.full_name] = EventBatch(
                ef.full_name, dec.ts[idx], np.full(idx.shape[0], cpu, np.int32), pid,
                idx + seq0 if ev_seq is None else ev_seq[idx],
                cols, dictionary)
        return out
