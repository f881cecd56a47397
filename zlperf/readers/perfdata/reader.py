"""The native perf.data (PERFILE2) reader: tracepoint samples as :class:`zlperf.events.Chunk` columns.

Opening parses the header (:mod:`.layout`), walks the records once (:mod:`.records`, after inflating
``perf record -z`` data, :mod:`.compressed`) into a sample index kept in a temporary file (:mod:`.index`:
memory does not grow with the file) and picks the kallsyms (:mod:`.symbols`); chunks are decoded on
demand (:mod:`.samples`).
"""

from __future__ import annotations

__all__ = ["PerfDataReader", "CHUNK_SAMPLES"]

import mmap
import os
import tempfile
import threading
from types import MappingProxyType
from typing import Collection, Iterator, Mapping, Optional, Sequence

import numpy as np

from zlperf.arrays import distinct
from zlperf.errors import TraceFormatError, ZlperfError
from zlperf.events import MISSED_EVENTS, Chunk, EventBatch, ReadPart, TraceInfo, balanced_parts
from zlperf.readers.perfdata.compressed import inflate_data_section
from zlperf.readers.perfdata.layout import TYPE_TRACEPOINT, PerfHeaderInfo, read_header
from zlperf.readers.perfdata.index import SampleIndex, index_records
from zlperf.readers.perfdata.records import Compressed
from zlperf.readers.perfdata.samples import DataViews, decode_samples
from zlperf.readers.perfdata.symbols import find_kallsyms

#: Samples decoded per chunk: bounds the temporary index arrays (n x field size bytes).
CHUNK_SAMPLES = 1 << 18

#: Below this many samples a recording is read in one process (a fork costs more than it saves).
_PARALLEL_SAMPLES = 1 << 19

_CLOCKS = {0: "realtime", 1: "monotonic", 4: "monotonic_raw", 7: "boottime", 11: "tai"}


def _clock_name(clockid: Optional[int]) -> str:
    if clockid is None:
        return "perf"  # perf's default: local_clock() (sched_clock), like trace-cmd's "local"
    return _CLOCKS.get(clockid, f"clockid {clockid}")


class PerfDataReader:
    """:class:`~zlperf.events.TraceReader` over a perf.data file (tracepoint samples)."""

    def __init__(self, path: str, *, kallsyms: Optional[str] = None,
                 zone_locks: Mapping[int, tuple[int, str]] = {}, chunk_samples: int = CHUNK_SAMPLES,
                 name: Optional[str] = None, jobs: Optional[int] = None):
        """Open ``path``, index its records and find its symbols (``kallsyms``: a file to use instead;
        ``name``: the path to show when ``path`` is a temporary copy; ``jobs``: processes to analyse the
        CPUs in, see :meth:`split`)."""
        self.path = str(name or path)
        self.chunk_samples = chunk_samples
        self.jobs = jobs
        self._mm: "mmap.mmap | bytes" = b""
        self._inflated: "mmap.mmap | bytes" = b""
        try:
            self._fh = open(path, "rb")
        except OSError as exc:
            raise TraceFormatError(self.path, None, f"cannot open ({exc.strerror})", "check the path") from None
        try:
            if os.fstat(self._fh.fileno()).st_size:
                self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
            self.header = h = read_header(self.path, self._mm)
            warnings = list(h.warnings)
            if not any(a.type == TYPE_TRACEPOINT for a in h.attrs):
                warnings.append("no tracepoint events in this perf.data (record with -e SYS:EVENT)")
            self._index = self._walk(h, warnings)
            self._drop_pages(self._mm)
            self._drop_pages(self._inflated)
            symbols = find_kallsyms(self.path, h, kallsyms, self._index.kernel_ref, warnings)
        except BaseException:
            self.close()
            raise
        uname = " ".join(x for x in (h.hostname, h.osrelease, h.arch) if x) or None
        self.info = TraceInfo(
            path=self.path, format="perf.data", clock=_clock_name(h.clockid), long_size=h.long_size,
            page_size=h.page_size, cpus=h.nr_cpus, buffers=("",),
            formats=MappingProxyType({a.name: a.format for a in h.attrs if a.format is not None}),
            symbols=symbols, cmdlines=dict(self._index.cmdlines),
            uname=f"Linux {uname}" if uname else None, warnings=warnings, zone_locks=dict(zone_locks))

    def _walk(self, h: PerfHeaderInfo, warnings: list[str]) -> SampleIndex:
        """Index the data section (inflated first when perf record -z compressed it)."""
        try:
            return self._walk_data(h, warnings)
        except OSError as exc:
            if exc.filename is not None:
                raise
            # The sample index and an inflated section live in unnamed temporary files: a full or missing
            # temporary folder is the user's to fix, not a bug.
            raise ZlperfError(f"{self.path}: cannot keep the sample index in a temporary file in "
                              f"{tempfile.gettempdir()} ({exc.strerror or exc}): free space there or set TMPDIR "
                              "to a folder with room (about 28 bytes per sample)") from None

    def _walk_data(self, h: PerfHeaderInfo, warnings: list[str]) -> SampleIndex:
        self._views = DataViews(self._mm, h.data_offset, h.data_size)
        try:
            return index_records(self._views.words, self._views.u8, h.data_size, h.data_offset, self.path,
                                 h.attrs, h.saved_cmdlines, warnings,
                                 lambda n: self._drop_pages(self._mm, h.data_offset + n))
        except Compressed:
            pass
        self._inflated, size = inflate_data_section(self._mm, h.data_offset, h.data_size, self.path,
                                                    h.compressed_mmap_len, warnings)
        self._drop_pages(self._mm)
        self._views = DataViews(self._inflated, 0, size)
        return index_records(self._views.words, self._views.u8, size, 0, self.path, h.attrs, h.saved_cmdlines,
                             warnings, lambda n: self._drop_pages(self._inflated, n))

    @property
    def reordered(self) -> bool:
        """Whether the file's per-CPU streams were out of time order, so samples were sorted first."""
        return self._index.reordered

    def gaps(self) -> list[tuple[int, int, int, Optional[int]]]:
        """The lost-event records as (cpu, time, count, time of the CPU's next sample or None)."""
        return self._index.gaps()

    # -- parts ------------------------------------------------------------------------------
    def split(self, buffer: str = "") -> list[ReadPart]:
        """The CPUs in as many parts as there are processes to read them (``jobs``; None: this one and the
        idle cores, for recordings of more than :data:`_PARALLEL_SAMPLES` samples, not from a threaded
        program: a fork copies one thread only), each a run of neighbouring CPUs with about the same
        samples. Positions are the recording's own, so parts need no renumbering (``used`` stays 0)."""
        from zlperf.readers.workers import default_jobs

        idx = self._index
        if buffer or idx.n == 0:
            return [ReadPart((), 0, first=True)]
        if self.jobs is None and (idx.n < _PARALLEL_SAMPLES or threading.active_count() > 1):
            return [ReadPart((), idx.n, first=True)]
        jobs = default_jobs() if self.jobs is None else self.jobs
        counts: dict[int, int] = {}
        for rec in idx.file_order(1 << 20):  # CPUs by their distinct values: a damaged CPU number costs nothing
            cpus, n = np.unique(rec["cpu"], return_counts=True)
            for cpu, k in zip(cpus.tolist(), n.tolist()):
                counts[cpu] = counts.get(cpu, 0) + k
        for cpu in distinct(idx.lost_cpu).tolist() if len(idx.lost_cpu) else ():  # a CPU's gaps go with its part
            counts.setdefault(cpu, 0)
        if jobs <= 1 or len(counts) < 2:
            return [ReadPart((), idx.n, first=True)]
        return balanced_parts(sorted(counts.items()), min(jobs, len(counts)))

    def end_parts(self, parts: Sequence[ReadPart], events: Optional[Collection[str]] = None,
                  buffer: str = "") -> None:
        """Nothing to add: the first part gave the notes about the whole recording."""

    # -- decoding ---------------------------------------------------------------------------
    def chunks(self, events: Optional[Collection[str]] = None, buffer: str = "",
               part: Optional[ReadPart] = None) -> Iterator[Chunk]:
        """Yield the samples (and lost-event gaps) in chunks of at most ``chunk_samples`` samples; with
        ``part`` (from :meth:`split`), only those of its CPUs (all of them for a part without CPUs)."""
        if buffer:
            return
        mine = None if part is None or not part.cpus else np.array(sorted(part.cpus), dtype=np.int64)
        idx = self._index
        wanted = None if events is None else set(events)
        attrs = self.header.attrs
        decode = {a.index for a in attrs
                  if a.type == TYPE_TRACEPOINT and a.format is not None and (wanted is None or a.name in wanted)}
        missing = {a.name for a in attrs if a.type == TYPE_TRACEPOINT and a.format is None and a.problem is None}
        for name in sorted(missing) if part is None or part.first else ():
            note = f"{name}: no format in the file's tracing data; its samples were skipped"
            if note not in self.info.warnings:
                self.info.warnings.append(note)
        n = idx.n
        step = max(1, self.chunk_samples)
        if n == 0:
            missed = self._lost_in(0, 0, 0, mine)
            if missed is not None:
                yield Chunk({MISSED_EVENTS: missed})
            return
        lo = 0
        for rec in idx.batches(step):  # read back from the index's file a chunk at a time
            hi = lo + len(rec)
            seq = rec["pos"] if not idx.reordered else 2 * np.arange(lo, hi, dtype=np.int64)
            if mine is not None:  # this part's CPUs (positions stay the recording's own)
                keep = np.isin(rec["cpu"], mine)
                rec, seq = rec[keep], seq[keep]
            pos, time, cpu = (np.ascontiguousarray(rec[k]) for k in ("pos", "time", "cpu"))
            seq = np.ascontiguousarray(seq)
            chunk = Chunk()
            attr_of = rec["attr"]
            for ai in distinct(attr_of).tolist():
                if ai not in decode:
                    continue
                sel = np.flatnonzero(attr_of == ai)
                chunk.batches[attrs[ai].name] = decode_samples(self._views, attrs[ai], pos[sel], time[sel],
                                                               cpu[sel], seq[sel])
            missed = self._lost_in(lo, hi, n, mine)
            if missed is not None:
                chunk.batches[MISSED_EVENTS] = missed
            self._drop_pages(self._inflated or self._mm)
            lo = hi
            if chunk.batches:
                yield chunk

    @staticmethod
    def _drop_pages(mm: "mmap.mmap | bytes", upto: Optional[int] = None) -> None:
        """Unmap the pages of ``mm`` below ``upto`` (all: None) from this process; they stay in the
        page cache and come back if read again. Batches are copies, so resident memory stays what
        one chunk needs, not the file's size."""
        if not isinstance(mm, mmap.mmap):
            return
        length = len(mm) if upto is None else min(upto, len(mm)) // mmap.PAGESIZE * mmap.PAGESIZE
        try:
            if length:
                mm.madvise(mmap.MADV_DONTNEED, 0, length)
        except (AttributeError, OSError, ValueError):  # no madvise here: the pages just stay
            pass

    def _lost_in(self, lo: int, hi: int, n: int, cpus: Optional[np.ndarray] = None) -> Optional[EventBatch]:
        """The gaps whose next sample is in rows [lo, hi) (the last chunk also takes trailing gaps), of
        ``cpus`` only when given."""
        idx = self._index
        if not len(idx.lost_cpu):
            return None
        r = idx.lost_rank
        wanted = (r >= lo) & ((r < hi) | (hi >= n))
        if cpus is not None:
            wanted &= np.isin(idx.lost_cpu, cpus)
        sel = np.flatnonzero(wanted)
        if not len(sel):
            return None
        return EventBatch(
            name=MISSED_EVENTS, ts=idx.lost_time[sel], cpu=idx.lost_cpu[sel].copy(),
            pid=np.full(len(sel), -1, np.int32), seq=idx.lost_seq[sel].astype(np.int64),
            fields={"count": idx.lost_count[sel].copy()},
        )

    def __enter__(self) -> "PerfDataReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the mappings, the file and the index's temporary files."""
        self._views = None  # type: ignore[assignment]
        index = getattr(self, "_index", None)
        if index is not None:
            index.close()
        for attr in ("_inflated", "_mm"):
            mm = getattr(self, attr, None)
            if isinstance(mm, mmap.mmap):
                try:
                    mm.close()
                except BufferError:
                    pass  # a caller still holds a view into a batch: the map closes with it
            setattr(self, attr, b"")
        fh = getattr(self, "_fh", None)
        if fh is not None:
            fh.close()
