"""trace.dat through the system's libtracecmd.so.1 / libtraceevent.so.1: the reference reader.

libtracecmd walks the file and the ring-buffer pages; this module turns its records into the
columnar :class:`zlperf.events.Chunk` stream every reader yields. Where it differs from the fast
reader, because libtraceevent exposes no more:

- ``EventFormat.print_fmt`` is the format string only (libtraceevent keeps the arguments parsed),
  and C types are re-spaced by its tokenizer (``char * const *``).
- ``info.symbols`` is libtraceevent's function table: every kallsyms line, data symbols too.
- task names arrive with the chunks (``Chunk.comms``): libtraceevent looks a pid up, it has no listing.
"""

from __future__ import annotations

__all__ = ["LibTraceCmdReader", "CHUNK_EVENTS"]

import ctypes
import os
import struct
import sys
import tempfile
from collections import defaultdict
from types import MappingProxyType
from typing import Collection, Iterator, Mapping, Optional

import numpy as np

from zlperf.arrays import distinct
from zlperf.errors import TraceFormatError, ZlperfError
from zlperf.events import MISSED_EVENTS, Chunk, EventBatch, TraceInfo
from zlperf.formats import EventFormat, format_problem
from zlperf.kallsyms import Kallsyms
from zlperf.readers.libtracecmd.bindings import REC_HEAD, HandleOwner, load_library
from zlperf.readers.libtracecmd.decode import SYNTHESIZED, decode_fields, event_format
from zlperf.readers.libtracecmd.safety import in_child, open_checked
from zlperf.readers.metadata import default_buffer, parse_cpustats

#: Events per yielded chunk: big enough for numpy to pay off, small enough to keep memory flat.
CHUNK_EVENTS = 65536


def _s(b: Optional[bytes]) -> str:
    return b.decode("utf-8", "replace") if b else ""


class LibTraceCmdReader(HandleOwner):
    """A :class:`zlperf.events.TraceReader` over libtracecmd (the reference implementation)."""

    def __init__(self, path: str, *, kallsyms: Optional[str] = None,
                 zone_locks: Mapping[int, tuple[int, str]] = {}, chunk_events: int = CHUNK_EVENTS,
                 name: Optional[str] = None):
        """Open ``path`` with libtracecmd after zlperf's own checks (:mod:`.safety`).

        ``kallsyms``: a file replacing the function table libtraceevent loaded from the trace;
        ``name``: the path to show when ``path`` is a temporary copy.
        """
        self.path = str(name or path)
        self.chunk_events = chunk_events
        self._handle = None
        self._lib = load_library()
        self._handle, notes = open_checked(self._lib, str(path), name=self.path)
        try:
            self._tep = self._lib.tracecmd_get_tep(self._handle)
            self._big = bool(self._lib.tep_is_file_bigendian(self._tep))
            self._instances: dict[str, int] = {}
            self._formats_by_id: dict[int, EventFormat] = {}
            self.info = self._read_info(kallsyms, zone_locks)
            self.info.warnings[:0] = notes  # what zlperf's own checks of the file noticed
        except BaseException:
            self.close()
            raise

    # -- metadata -------------------------------------------------------------------------
    def _read_info(self, kallsyms: Optional[str], zone_locks: Mapping[int, tuple[int, str]]) -> TraceInfo:
        lib, h = self._lib, self._handle
        version = int(lib.tracecmd_get_in_file_version(h))
        name, ver = ctypes.c_char_p(), ctypes.c_char_p()
        compression = None
        if lib.tracecmd_get_file_compress_proto(h, ctypes.byref(name), ctypes.byref(ver)) == 0 and name.value:
            compression = _s(name.value)
            if compression == "none":
                compression = None
        buffers = [""]
        for i in range(int(lib.tracecmd_buffer_instances(h))):
            bname = _s(lib.tracecmd_buffer_instance_name(h, i))
            self._instances[bname] = i
            buffers.append(bname)
        formats: dict[str, EventFormat] = {}
        for i in range(int(lib.tep_get_events_count(self._tep))):
            ev_p = lib.tep_get_event(self._tep, i)
            if not ev_p:
                continue
            ef = event_format(ev_p.contents)
            self._formats_by_id[ef.id] = ef
            if ef.full_name in SYNTHESIZED:  # made up by libtracecmd, not stored in the file
                continue
            formats[ef.full_name] = ef
        warnings: list[str] = []
        symbols = Kallsyms.from_file(kallsyms) if kallsyms else self._kallsyms()
        if symbols is None:
            warnings.append(f"{self.path}: no kernel symbols (kallsyms) available; addresses stay hex")
        failures = int(lib.tracecmd_get_parsing_failures(h))
        if failures:
            warnings.append(f"{self.path}: libtraceevent could not parse {failures} event format(s)")
        return TraceInfo(
            path=self.path, format=f"trace.dat v{version}" + (f" ({compression})" if compression else ""),
            version=version, compression=compression, clock=_s(lib.tracecmd_get_trace_clock(h)) or None,
            long_size=int(lib.tracecmd_long_size(h)), page_size=int(lib.tracecmd_page_size(h)),
            cpus=int(lib.tracecmd_cpus(h)), buffers=tuple(buffers), formats=MappingProxyType(formats),
            symbols=symbols, cpu_stats=parse_cpustats(_s(lib.tracecmd_get_cpustats(h))),
            uname=_s(lib.tracecmd_get_uname(h)) or None, warnings=warnings, zone_locks=dict(zone_locks))

    def _kallsyms(self) -> Optional[Kallsyms]:
        """The function table libtraceevent loaded from the file's kallsyms section.

        libtraceevent has no iterator over it, only tep_print_funcs() to stdout: capture fd 1.
        """
        lib = self._lib
        try:
            sys.stdout.flush()
        except (OSError, ValueError, AttributeError):
            pass  # a closed or absent sys.stdout: nothing of ours to flush
        lib.fflush(None)
        try:
            saved = os.dup(1)
        except OSError:
            return None
        with tempfile.TemporaryFile() as tmp:
            try:
                os.dup2(tmp.fileno(), 1)
                lib.tep_print_funcs(self._tep)
                lib.fflush(None)
            finally:
                os.dup2(saved, 1)
                os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", "replace")
        addrs: list[int] = []
        names: list[str] = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) < 2:
                continue
            try:
                addr = int(parts[0], 16)
            except ValueError:
                continue
            addrs.append(addr)
            names.append(parts[1])
        if not names:
            return None
        return Kallsyms(np.array(addrs, dtype=np.uint64), names, source=f"{self.path} (kallsyms, libtraceevent)")

    def comm(self, pid: int) -> Optional[str]:
        """The saved command name of ``pid``, or None when the file has none."""
        text = _s(self._lib.tep_data_comm_from_pid(self._tep, int(pid)))
        return None if not text or text == "<...>" else text

    # -- events ---------------------------------------------------------------------------
    def _has_data(self, handle) -> bool:
        cpu = ctypes.c_int()
        return bool(self._lib.tracecmd_peek_next_data(handle, ctypes.byref(cpu)))

    def _instance(self, name: str) -> int:
        h = self._lib.tracecmd_buffer_instance_handle(self._handle, self._instances[name])
        if not h:
            raise TraceFormatError(self.path, None, f"libtracecmd cannot open buffer {name!r}")
        return h

    def _instance_has_data(self, name: str) -> bool:
        if name == "":
            return self._has_data(self._handle)
        h = self._instance(name)
        try:
            return self._has_data(h)
        finally:
            self._lib.tracecmd_close(h)

    def _buffer_handle(self, buffer: str) -> tuple[int, bool]:
        """(handle, whether it is ours to close) of ``buffer`` ("" = the default buffer)."""
        if buffer == "" and self._instances:
            buffer = default_buffer(self.info.buffers, self._instance_has_data)
        if buffer == "":
            return self._handle, False
        if buffer not in self._instances:
            raise ZlperfError(f"{self.path}: no buffer (instance) named {buffer!r}; it holds "
                              + ", ".join(repr(b) for b in self.info.buffers))
        return self._instance(buffer), True

    def chunks(self, events: Optional[Collection[str]] = None, buffer: str = "") -> Iterator[Chunk]:
        """Yield ``buffer``'s events in time order (libtracecmd merges the CPUs), in chunks.

        libtracecmd reads them in a forked child (:func:`.safety.in_child`): should it crash on
        damage no check found, the stream ends with a warning instead of the interpreter.
        """
        return in_child(lambda: self._read(events, buffer), self.info.warnings, self.path)

    def _read(self, events: Optional[Collection[str]], buffer: str) -> Iterator[Chunk]:
        """The record loop behind :meth:`chunks` (runs in the child)."""
        lib = self._lib
        handle, own = self._buffer_handle(buffer)
        tep = lib.tracecmd_get_tep(handle) if own else self._tep
        formats = self._formats_by_id
        if own and tep != self._tep:  # instances normally share the top handle's parser
            formats = {}
            for i in range(int(lib.tep_get_events_count(tep))):
                ev_p = lib.tep_get_event(tep, i)
                if ev_p:
                    ef = event_format(ev_p.contents)
                    formats[ef.id] = ef
        wanted = None if events is None else set(events)
        keep = {eid for eid, ef in formats.items() if wanted is None or ef.full_name in wanted}
        page_size = int(lib.tracecmd_page_size(handle)) or self.info.page_size
        damaged = {eid: problem for eid in keep if (problem := format_problem(formats[eid], page_size))}
        keep -= set(damaged)
        unusable: dict[int, int] = {}
        type_fmt = next(iter(formats.values())).field("common_type") if formats else None
        type_off = type_fmt.offset if type_fmt else 0
        type_size = type_fmt.size if type_fmt else 2
        # Raw twins of the prototypes: an int address is cheaper than a ctypes pointer object.
        read_next = lib.tc["tracecmd_read_next_data"]
        read_next.restype, read_next.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)]
        free = lib.tc["tracecmd_free_record"]
        free.restype, free.argtypes = None, [ctypes.c_void_p]
        # ctypes.string_at is a Python wrapper around this foreign function: skip a frame per call.
        string_at = getattr(ctypes, "_string_at", ctypes.string_at)
        head = REC_HEAD.unpack
        head_size = REC_HEAD.size
        cpu_out = ctypes.c_int()
        cpu_ref = ctypes.byref(cpu_out)
        corrupt: list[tuple[int, int]] = []
        pending: defaultdict[int, list] = defaultdict(list)
        missed: list = []
        # common_type as the format says (u16 on every kernel so far), in the file's byte order.
        type_of = struct.Struct((">" if self._big else "<")
                                + {1: "B", 2: "H", 4: "I"}.get(type_size, "H")).unpack_from
        unknown: dict[int, int] = {}
        looked_up: set[int] = set()  # pids whose task name was asked for in this pass
        n = 0
        seq = 0
        limit = self.chunk_events
        try:
            # Hot loop, open-coded: one ctypes call, two copies, one free per record.
            while True:
                rp = read_next(handle, cpu_ref)
                if not rp:
                    break
                ts, offset, missed_events, rec_size, size, data_p, cpu = head(string_at(rp, head_size))
                if missed_events:
                    missed.append((ts, cpu, seq, missed_events))
                    seq += 1
                    n += 1
                if not (0 <= size <= rec_size and (offset % page_size) + rec_size <= page_size):
                    free(rp)  # record_fits(), inlined: a corrupted length; never copy past the page
                    corrupt.append((offset, cpu))
                    continue
                data = string_at(data_p, size)
                free(rp)
                eid = type_of(data, type_off)[0]
                if eid in keep:
                    pending[eid].append((ts, cpu, seq, data))
                    n += 1
                elif eid not in formats:
                    unknown[eid] = unknown.get(eid, 0) + 1
                elif eid in damaged:
                    unusable[eid] = unusable.get(eid, 0) + 1
                seq += 1
                if n >= limit:
                    yield self._build(pending, missed, formats, looked_up)
                    pending, missed, n = defaultdict(list), [], 0
            if n:
                yield self._build(pending, missed, formats, looked_up)
        finally:
            if own:
                lib.tracecmd_close(handle)
            if corrupt:
                off, cpu = corrupt[0]
                self.info.warnings.append(
                    f"{self.path}: {len(corrupt)} record(s) with an impossible length skipped "
                    f"(first at offset {off:#x}, CPU {cpu}): the ring-buffer data is corrupted")
            for eid, count in unknown.items():
                self.info.warnings.append(
                    f"{self.path}: {count} record(s) with event id {eid} that has no format were skipped")
            for eid, count in unusable.items():
                self.info.warnings.append(f"{count} {formats[eid].full_name} record(s) skipped: its format is "
                                          f"damaged ({damaged[eid]})")

    def _build(self, pending: dict[int, list], missed: list, formats: dict[int, EventFormat],
               looked_up: set[int]) -> Chunk:
        chunk = Chunk()
        if missed:
            ts, cpu, seq, count = zip(*missed)
            chunk.batches[MISSED_EVENTS] = EventBatch(
                MISSED_EVENTS, np.array(ts, dtype=np.uint64), np.array(cpu, dtype=np.int32),
                np.full(len(ts), -1, dtype=np.int32), np.array(seq, dtype=np.int64),
                {"count": np.array(count, dtype=np.int64)})
        for eid, rows in pending.items():
            ef = formats[eid]
            ts, cpu, seq, datas = zip(*rows)
            dictionary: dict = {}
            cols = decode_fields(ef, datas, self._big, dictionary, self.info.warnings)
            pid_col = cols.get("common_pid")
            pid = pid_col.astype(np.int32) if pid_col is not None else np.full(len(ts), -1, np.int32)
            chunk.batches[ef.full_name] = EventBatch(
                ef.full_name, np.array(ts, dtype=np.uint64), np.array(cpu, dtype=np.int32), pid,
                np.array(seq, dtype=np.int64), cols, dictionary)
            self._learn_comms(pid, chunk.comms, looked_up)
        return chunk

    def _learn_comms(self, pids: np.ndarray, comms: dict[int, str], looked_up: set[int]) -> None:
        """Name the pids first seen in this pass (libtraceevent looks a pid up, it has no listing)."""
        for pid in distinct(pids).tolist():
            if pid not in looked_up:
                looked_up.add(pid)
                comm = self.comm(pid)
                if comm is not None:
                    comms[pid] = comm

    def close(self) -> None:
        """Close the libtracecmd handle (idempotent)."""
        if getattr(self, "_handle", None):
            self._lib.tracecmd_close(self._handle)
            self._handle = None
