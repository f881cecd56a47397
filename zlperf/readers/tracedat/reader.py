"""The fast columnar trace.dat reader: numpy over whole runs of ring-buffer pages, no libtracecmd.

Implements :class:`zlperf.events.TraceReader`; chunks come CPU by CPU, one per run of pages, so
memory stays flat whatever the file size.
"""

from __future__ import annotations

__all__ = ["FastTraceReader"]

import queue
import threading
from typing import Collection, Iterator, Mapping, Optional, Sequence, TypeVar

import numpy as np

from zlperf.errors import TraceFormatError
from zlperf.events import Chunk, ReadPart, TraceInfo, balanced_parts
from zlperf.formats import EventFormat, format_problem
from zlperf.kallsyms import Kallsyms
from zlperf.readers.metadata import default_buffer
from zlperf.readers.tracedat.container import TraceDatFile
from zlperf.readers.tracedat.options import BufferInfo
from zlperf.readers.tracedat.pages import RUN_BYTES
from zlperf.readers.strings import expand
from zlperf.readers.tracedat.runs import RunDecoder

#: Below this many bytes of pages (compressed as stored) a buffer is decoded in one process.
_PARALLEL_BYTES = 4 << 20

T = TypeVar("T")


def _prefetch(it: Iterator[T], depth: int = 1) -> Iterator[T]:
    """Run ``it`` up to ``depth`` items ahead in a thread: file reads and zstd/zlib release the
    GIL, so the next run of pages is inflated while this one is decoded (memory: depth + 1 runs)."""
    q: "queue.Queue[tuple[int, object]]" = queue.Queue()
    slots = threading.Semaphore(depth)
    stop = threading.Event()

    def work() -> None:
        try:
            while True:
                while not slots.acquire(timeout=0.1):
                    if stop.is_set():
                        return
                if stop.is_set():
                    return
                try:
                    item = next(it)
                except StopIteration:
                    q.put((1, None))
                    return
                q.put((0, item))
                del item
        except BaseException as exc:  # handed to the consumer, raised there
            q.put((2, exc))

    t = threading.Thread(target=work, name="zlperf-prefetch", daemon=True)
    t.start()
    try:
        while True:
            kind, item = q.get()
            slots.release()
            if kind == 1:
                return
            if kind == 2:
                raise item  # type: ignore[misc]
            yield item  # type: ignore[misc]
            item = None  # let the caller's finished run go before the next arrives
    finally:
        stop.set()
        t.join()


class _Wanted:
    """Event id -> format for the events asked for (None for the others, for unknown ids and for
    damaged formats); counts the records skipped for want of a usable format."""

    def __init__(self, file: TraceDatFile, wanted: Optional[set[str]], page_size: int):
        self._formats = file.formats
        self._page_size = page_size
        self._wanted = wanted
        self._cache: dict[int, Optional[EventFormat]] = {}
        self.unknown: dict[int, int] = {}  #: event id without a format -> records skipped
        self.unusable: dict[str, list] = {}  #: event name -> [records skipped, what is wrong]

    def get(self, ev_id: int) -> Optional[EventFormat]:
        if ev_id not in self._cache:
            name = self._formats.name_of(ev_id)
            fmt = None
            if name is not None and (self._wanted is None or name in self._wanted):
                fmt = self._formats.by_id(ev_id)
                problem = format_problem(fmt, self._page_size) if fmt is not None else None
                if problem is not None:
                    self.unusable[name] = [0, problem]
                    fmt = None
            self._cache[ev_id] = fmt
        return self._cache[ev_id]

    def skipped(self, ev_id: int, n: int) -> None:
        """Count ``n`` records of ``ev_id`` that :meth:`get` gave no format for, if they were wanted."""
        name = self._formats.name_of(ev_id)
        if name is None:
            self.unknown[ev_id] = self.unknown.get(ev_id, 0) + n
        elif name in self.unusable:
            self.unusable[name][0] += n

    def take_counts(self) -> tuple[dict, dict]:
        """The skipped-record counts so far (a worker's), reset to none; the formats stay cached."""
        out = (self.unknown, self.unusable)
        self.unknown, self.unusable = {}, {name: [0, problem] for name, (_n, problem) in self.unusable.items()}
        return out

    def add_counts(self, counts: tuple[dict, dict]) -> None:
        """Add a worker's :meth:`take_counts`."""
        unknown, unusable = counts
        for eid, n in unknown.items():
            self.unknown[eid] = self.unknown.get(eid, 0) + n
        for name, (n, problem) in unusable.items():
            self.unusable.setdefault(name, [0, problem])[0] += n

    def warnings(self) -> list[str]:
        """What was skipped, one line per event."""
        out = [f"{count} record(s) with event id {eid} that has no format in the file were skipped"
               for eid, count in sorted(self.unknown.items())]
        out += [f"{count} {name} record(s) skipped: its format is damaged ({problem})"
                for name, (count, problem) in sorted(self.unusable.items())]
        return out


def _take(notes: list) -> list:
    """The notes gathered so far (a worker's), leaving the list empty."""
    out = list(notes)
    del notes[:]
    return out


def _for_pipe(chunk: Chunk) -> Chunk:
    """``chunk`` without what the reader rebuilds cheaper than a pipe carries it: string columns that
    have a dictionary (object arrays pickle one item at a time; the codes and the few distinct values go
    out of band) and the CPU column (one value: a run is one CPU's)."""
    for b in chunk.batches.values():
        for name in b.dictionary:
            if name in b.fields and b.fields[name].dtype == object:
                b.fields[name] = None  # type: ignore[assignment]  # keeps the columns' order
        if len(b.cpu) and b.cpu.dtype == np.int32 and b.cpu[0] == b.cpu[-1] and (b.cpu == b.cpu[0]).all():
            b.cpu = int(b.cpu[0])  # type: ignore[assignment]
    return chunk


def _from_pipe(chunk: Chunk) -> Chunk:
    """What :func:`_for_pipe` left out, as the decoder made it."""
    for b in chunk.batches.values():
        for name, (codes, values) in b.dictionary.items():
            if name in b.fields and b.fields[name] is None:
                b.fields[name] = expand(codes, values)
        if isinstance(b.cpu, int):
            b.cpu = np.full(len(b.ts), b.cpu, np.int32)
    return chunk


class FastTraceReader:
    """Read a trace.dat (v6, v7; zstd, zlib or uncompressed) into :class:`Chunk` columns."""

    def __init__(self, path: str, *, kallsyms: Optional[str] = None,
                 zone_locks: Mapping[int, tuple[int, str]] = {}, run_bytes: int = RUN_BYTES,
                 name: Optional[str] = None, jobs: Optional[int] = None):
        """Open ``path`` and read its metadata; ``kallsyms``: a file replacing the saved kallsyms;
        ``name``: the path to show (in ``info.path`` and messages) when ``path`` is a temporary copy;
        ``jobs``: processes in all (None: :func:`~zlperf.readers.workers.default_jobs`, for files large
        enough): with more than one,
        ``jobs - 1`` worker processes decode CPUs while this one takes their chunks (and analyses them)."""
        self.path = str(name or path)
        self.run_bytes = run_bytes
        self.jobs = jobs
        self._file = f = TraceDatFile(str(path), self.path)
        try:
            if kallsyms:
                symbols: Optional[Kallsyms] = Kallsyms.from_file(kallsyms)
            elif f.kallsyms:
                symbols = Kallsyms.from_text(f.kallsyms, source=f"{self.path} (saved kallsyms)")
            else:
                symbols = None
        except BaseException:
            f.close()
            raise
        f.kallsyms = b""  # the table holds the text now
        fmt = f"trace.dat v{f.version}" + (f" ({f.compression})" if f.compression else "")
        names = [b.name for b in f.buffers]
        if "" not in names:
            names.insert(0, "")
        self.info = TraceInfo(
            path=self.path, format=fmt, version=f.version, compression=f.compression, clock=f.clock,
            long_size=f.long_size, page_size=f.page_size, cpus=f.cpus, buffers=tuple(names),
            formats=f.formats, symbols=symbols,
            # pid 0 is "<idle>" in libtraceevent and so in trace-cmd's output.
            cmdlines={0: "<idle>", **f.cmdlines}, cpu_stats=dict(f.cpu_stats), uname=f.uname,
            warnings=f.warnings + f.damage, zone_locks=dict(zone_locks))
        # Common fields are the same for every event: take common_type from the first format.
        self._type_field = None
        for ev_id in f.formats.ids():
            ef = f.formats.by_id(ev_id)
            if ef is not None and ef.field("common_type") is not None:
                self._type_field = ef.field("common_type")
                break

    # ------------------------------------------------------------------------------------------
    def _resolve(self, buffer: str) -> Optional[BufferInfo]:
        bufs = {b.name: b for b in self._file.buffers}
        if buffer == "":
            buffer = default_buffer(list(bufs), lambda name: any(c.size for c in bufs[name].cpus))
            return bufs.get(buffer)
        if buffer in bufs:
            return bufs[buffer]
        raise TraceFormatError(self.path, None, f"no buffer (instance) {buffer!r} in this file",
                               "buffers here: " + ", ".join(repr(n) for n in self.info.buffers))

    def split(self, buffer: str = "") -> list[ReadPart]:
        """``buffer``'s CPUs in as many parts as there are processes to read them (see ``jobs``), each a run
        of neighbouring CPUs with about the same bytes; one part when the file is small (a fork costs
        more than it saves) or the buffer is empty."""
        buf = self._resolve(buffer)
        cds = sorted(buf.cpus, key=lambda c: c.cpu) if buf is not None and not buf.latency else []
        busy = sum(1 for cd in cds if cd.size)
        n = min(self._jobs(cds), busy) if busy else 1
        return balanced_parts([(cd.cpu, cd.size) for cd in cds], n)

    def end_parts(self, parts: Sequence[ReadPart], events: Optional[Collection[str]] = None,
                  buffer: str = "") -> None:
        """Warn of the records ``parts`` (read with ``events``) skipped, as one reading of them all would."""
        buf = self._resolve(buffer)
        fmts = _Wanted(self._file, None if events is None else set(events), buf.page_size if buf else 0)
        for part in parts:
            fmts.add_counts(part.skips)
        self.info.warnings.extend(fmts.warnings())

    def chunks(self, events: Optional[Collection[str]] = None, buffer: str = "",
               part: Optional[ReadPart] = None) -> Iterator[Chunk]:
        """Yield ``buffer``'s events CPU by CPU, one chunk per run of pages (see TraceReader).

        With more than one job, CPUs are decoded in ``jobs - 1`` worker processes
        (:mod:`zlperf.readers.workers`) while the caller works on the chunks: they, their stream positions
        and the warnings are the same as with one, in the same order. With ``part`` (from :meth:`split`),
        only its CPUs, in this process; positions from 0, skipped records kept in the part.
        """
        buf = self._resolve(buffer)
        if buf is None or buf.latency:
            return
        f = self._file
        wanted = None if events is None else set(events)
        fmts = _Wanted(f, wanted, buf.page_size)
        decoder = RunDecoder(f.header_page, self._type_field, fmts.get, fmts.skipped, big=f.big_endian,
                             ts_offset=f.ts_offset, notes=self.info.warnings)
        cds = sorted(buf.cpus, key=lambda c: c.cpu)
        if part is not None:
            cds = [cd for cd in cds if cd.cpu in part.cpus]
        jobs = 1 if part is not None else self._jobs(cds)
        seq = 0
        warn = self.info.warnings.append
        try:
            if jobs > 1:
                runs = self._from_workers(decoder, fmts, buf, cds, jobs - 1)
            else:
                runs = ((chunk, used) for _cd, chunk, used in self._runs(decoder, buf, cds) if chunk is not None)
            for chunk, used in runs:
                if seq:  # workers number each run from 0: the stream position goes on from the runs before
                    for b in chunk.batches.values():
                        b.seq += seq
                seq += used
                if chunk.batches:
                    yield chunk
                chunk = None  # type: ignore[assignment]
        finally:
            if part is not None:
                part.used, part.skips = seq, fmts.take_counts()
            else:
                for note in fmts.warnings():
                    warn(note)

    def _jobs(self, cds: list) -> int:
        """Processes for this buffer, this one included: one for small files (a fork costs more than it
        saves). This process counts as one since it is busy too (the analysis keeps up with one decoder
        on two cores; a second would only take turns with it)."""
        from zlperf.readers.workers import default_jobs

        jobs = default_jobs() if self.jobs is None else self.jobs
        busy = [cd for cd in cds if cd.size]
        # Not by default: for small files, nor from a threaded program (a fork copies one thread only).
        if self.jobs is None and (sum(cd.size for cd in busy) < _PARALLEL_BYTES or threading.active_count() > 1):
            return 1
        return max(1, min(jobs, len(busy) + 1))

    def _runs(self, decoder: RunDecoder, buf: BufferInfo, cds: list) -> Iterator[tuple[object, Optional[Chunk], int]]:
        """(CPU, chunk, stream positions it took) of each run of the pages of ``cds``, CPU after CPU, each numbered
        from 0, and (CPU, None, 0) at the end of each CPU. One thread reads and inflates the next run meanwhile,
        across CPUs (no wait at each CPU's start); what reading a run warned of is added just before the run is
        decoded, as without the thread."""
        def noted() -> Iterator[tuple[object, object, list]]:
            for cd in cds:
                box: list[str] = []
                for run in self._file.page_runs(buf, cd, box.append, self.run_bytes):
                    notes = box[:]
                    box.clear()
                    yield cd, run, notes
                    run = None  # type: ignore[assignment]
                yield cd, None, box[:]

        warnings = self.info.warnings
        for cd, run, notes in _prefetch(noted()):
            warnings.extend(notes)
            if run is None:
                yield cd, None, 0
                continue
            chunk, used = self._decode_run(decoder, run.data, buf.page_size, cd.cpu, 0,  # type: ignore[attr-defined]
                                           run.file_offset, run.first_page, run.gap_before)  # type: ignore[attr-defined]
            run = None  # free the pages before the next run
            yield cd, chunk, used
            chunk = None  # type: ignore[assignment]

    def _from_workers(self, decoder: RunDecoder, fmts: "_Wanted", buf: BufferInfo, cds: list,
                      jobs: int) -> Iterator[tuple[Chunk, int]]:
        """:meth:`_runs` of every CPU, decoded in ``jobs`` worker processes; the warnings each run
        gave in its worker are added here before its chunk is handed on, as one process would."""
        from zlperf.readers.workers import run_in_workers

        warnings = self.info.warnings

        def work(parts: list, emit) -> None:  # in a worker: its CPUs in order
            del warnings[:]  # the worker's copy: from here on it holds this worker's new warnings only
            for _cd, chunk, used in self._runs(decoder, buf, parts):
                if chunk is None:  # the end of a CPU
                    emit(("cpu", fmts.take_counts(), None, _take(warnings)))
                else:
                    emit(("run", _for_pipe(chunk), used, _take(warnings)))

        for kind, payload, used, notes in run_in_workers(cds, jobs, work, lambda m: m[0] == "cpu"):
            warnings.extend(notes)
            if kind == "cpu":
                fmts.add_counts(payload)
            else:
                yield _from_pipe(payload), used

    def _decode_run(self, decoder: RunDecoder, data: np.ndarray, page_size: int, cpu: int, seq0: int,
                    file_offset: int, first_page: int, gap_before: bool = False) -> tuple[Chunk, int]:
        out = decoder.decode(data, page_size, cpu, seq0, gap_before)
        for page, what in out.problems:
            self.info.warnings.append(
                f"cpu {cpu}: page {first_page + page} (run at file offset {file_offset:#x}): {what}; "
                "the rest of that page is lost")
        return out.chunk, out.used

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> "FastTraceReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
