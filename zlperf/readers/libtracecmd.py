"""trace.dat through the system's libtracecmd.so.1 / libtraceevent.so.1 (ctypes; no C build).

The reference reader: libtracecmd walks the file and the ring-buffer pages, and this module
turns its records into the columnar :class:`zlperf.events.Chunk` stream every reader yields.

Where it differs from the fast reader, because libtraceevent exposes no more:
- ``EventFormat.print_fmt`` is the format string only (libtraceevent keeps the arguments parsed),
  and C types are re-spaced by its tokenizer (``char * const *``).
- ``info.symbols`` is libtraceevent's function table: every kallsyms line, data symbols too.
- ``info.cmdlines`` fills in as chunks are read (pid -> comm lookup, no listing in the API).
"""

from __future__ import annotations

__all__ = ["LibTraceCmdReader", "TraceCmdLib", "load_library", "check_header", "decode_fields", "record_fits",
           "TepRecord", "TepEvent", "TepFormat", "TepFormatField"]

import ctypes
import ctypes.util
import os
import struct
import sys
import tempfile
from collections import defaultdict
from typing import Collection, Iterator, Optional

import numpy as np

from zlperf.errors import TraceFormatError, ZlperfError
from zlperf.events import MISSED_EVENTS, Chunk, CpuStats, EventBatch, TraceInfo
from zlperf.formats import EventFormat, FieldFormat
from zlperf.kallsyms import Kallsyms

#: Events per yielded chunk: big enough for numpy to pay off, small enough to keep memory flat.
CHUNK_EVENTS = 65536

# tracecmd_open() flags (trace-cmd.h): raw field values need no print plugins.
_FL_LOAD_NO_PLUGINS = 1 << 0
_FL_LOAD_NO_SYSTEM_PLUGINS = 1 << 1

# enum tep_format_flags (event-parse.h)
_IS_ARRAY, _IS_SIGNED, _IS_DYNAMIC, _IS_RELATIVE = 1, 4, 16, 256

_MISSING_LIB = "{lib} not found: apt install {pkg}, or use the fast reader"
#: (soname, Debian package) loaded in this order: libtracecmd needs libtraceevent's symbols.
_SONAMES = (("libtraceevent.so.1", "libtraceevent1"), ("libtracecmd.so.1", "libtracecmd1"))
_MAGIC = b"\x17\x08\x44tracing"


# Layouts as in /usr/include/traceevent/event-parse.h of libtraceevent 1.7.1 (Debian 12);
# tests/test_libtracecmd_reader.py compiles offsetof() checks against the installed headers.
class TepRecord(ctypes.Structure):
    """``struct tep_record`` (built without DEBUG_RECORD, as distributions ship it)."""

    _fields_ = [
        ("ts", ctypes.c_ulonglong),
        ("offset", ctypes.c_ulonglong),
        ("missed_events", ctypes.c_longlong),  # >0 count, -1 unknown, 0 none
        ("record_size", ctypes.c_int),
        ("size", ctypes.c_int),
        ("data", ctypes.c_void_p),
        ("cpu", ctypes.c_int),
        ("ref_count", ctypes.c_int),
        ("locked", ctypes.c_int),
        ("priv", ctypes.c_void_p),
    ]


class TepFormatField(ctypes.Structure):
    """``struct tep_format_field``."""


TepFormatField._fields_ = [
    ("next", ctypes.POINTER(TepFormatField)),
    ("event", ctypes.c_void_p),
    ("type", ctypes.c_char_p),
    ("name", ctypes.c_char_p),
    ("alias", ctypes.c_char_p),
    ("offset", ctypes.c_int),
    ("size", ctypes.c_int),
    ("arraylen", ctypes.c_uint),
    ("elementsize", ctypes.c_uint),
    ("flags", ctypes.c_ulong),
]


class TepFormat(ctypes.Structure):
    """``struct tep_format``."""

    _fields_ = [
        ("nr_common", ctypes.c_int),
        ("nr_fields", ctypes.c_int),
        ("common_fields", ctypes.POINTER(TepFormatField)),
        ("fields", ctypes.POINTER(TepFormatField)),
    ]


class TepEvent(ctypes.Structure):
    """``struct tep_event`` (``struct tep_print_fmt`` inlined: three pointers)."""

    _fields_ = [
        ("tep", ctypes.c_void_p),
        ("name", ctypes.c_char_p),
        ("id", ctypes.c_int),
        ("flags", ctypes.c_int),
        ("format", TepFormat),
        ("print_fmt_format", ctypes.c_char_p),
        ("print_fmt_args", ctypes.c_void_p),
        ("print_fmt_cache", ctypes.c_void_p),
        ("system", ctypes.c_char_p),
        ("handler", ctypes.c_void_p),
        ("context", ctypes.c_void_p),
    ]


_REC_P = ctypes.POINTER(TepRecord)

# The leading members of struct tep_record the hot loop needs, unpacked in one call.
_REC_HEAD = struct.Struct("@QQqiiPi")  # ts, offset, missed_events, record_size, size, data, cpu
assert (struct.calcsize("@QQqi"), struct.calcsize("@QQqii0P"), _REC_HEAD.size - 4) == \
    (TepRecord.size.offset, TepRecord.data.offset, TepRecord.cpu.offset)


def record_fits(offset: int, record_size: int, size: int, page_size: int) -> bool:
    """Whether a record lies inside its ring-buffer page (false for a corrupted length field).

    ``offset % page_size`` is where the record's header sits in its page (v6 and v7 alike);
    copying a payload that runs past the page would read foreign memory.
    """
    return 0 <= size <= record_size and (offset % page_size) + record_size <= page_size
_EV_P = ctypes.POINTER(TepEvent)
_FIELD_P = ctypes.POINTER(TepFormatField)


class TraceCmdLib:
    """The two shared libraries with the prototypes zlperf calls (loaded once per process)."""

    def __init__(self, tracecmd: ctypes.CDLL, traceevent: ctypes.CDLL, libc: ctypes.CDLL):
        self.tc, self.te, self.libc = tracecmd, traceevent, libc
        vp, cp, i, ull = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_ulonglong
        self._proto(tracecmd, "tracecmd_open", vp, [cp, i])
        self._proto(tracecmd, "tracecmd_close", None, [vp])
        self._proto(tracecmd, "tracecmd_get_tep", vp, [vp])
        self._proto(tracecmd, "tracecmd_read_next_data", _REC_P, [vp, ctypes.POINTER(i)])
        self._proto(tracecmd, "tracecmd_read_data", _REC_P, [vp, i])
        self._proto(tracecmd, "tracecmd_peek_next_data", _REC_P, [vp, ctypes.POINTER(i)])
        self._proto(tracecmd, "tracecmd_peek_data", _REC_P, [vp, i])
        self._proto(tracecmd, "tracecmd_read_at", _REC_P, [vp, ull, ctypes.POINTER(i)])
        self._proto(tracecmd, "tracecmd_free_record", None, [_REC_P])
        self._proto(tracecmd, "tracecmd_record_ref", None, [_REC_P])
        self._proto(tracecmd, "tracecmd_cpus", i, [vp])
        self._proto(tracecmd, "tracecmd_long_size", i, [vp])
        self._proto(tracecmd, "tracecmd_page_size", i, [vp])
        self._proto(tracecmd, "tracecmd_buffer_instances", i, [vp])
        self._proto(tracecmd, "tracecmd_buffer_instance_name", cp, [vp, i])
        self._proto(tracecmd, "tracecmd_buffer_instance_handle", vp, [vp, i])
        self._proto(tracecmd, "tracecmd_get_trace_clock", cp, [vp])
        self._proto(tracecmd, "tracecmd_get_cpustats", cp, [vp])
        self._proto(tracecmd, "tracecmd_get_uname", cp, [vp])
        self._proto(tracecmd, "tracecmd_get_in_file_version", ctypes.c_ulong, [vp])
        self._proto(tracecmd, "tracecmd_get_file_compress_proto", i,
                    [vp, ctypes.POINTER(cp), ctypes.POINTER(cp)])
        self._proto(tracecmd, "tracecmd_get_parsing_failures", i, [vp])
        self._proto(tracecmd, "tracecmd_set_loglevel", None, [i])
        self._proto(traceevent, "tep_set_loglevel", None, [i])
        self._proto(traceevent, "tep_get_events_count", i, [vp])
        self._proto(traceevent, "tep_get_event", _EV_P, [vp, i])
        self._proto(traceevent, "tep_find_event", _EV_P, [vp, i])
        self._proto(traceevent, "tep_find_field", _FIELD_P, [_EV_P, cp])
        self._proto(traceevent, "tep_find_any_field", _FIELD_P, [_EV_P, cp])
        self._proto(traceevent, "tep_read_number_field", i, [_FIELD_P, vp, ctypes.POINTER(ull)])
        self._proto(traceevent, "tep_read_number", ull, [vp, vp, i])
        self._proto(traceevent, "tep_data_type", i, [vp, _REC_P])
        self._proto(traceevent, "tep_data_pid", i, [vp, _REC_P])
        self._proto(traceevent, "tep_data_comm_from_pid", cp, [vp, i])
        self._proto(traceevent, "tep_find_function", cp, [vp, ull])
        self._proto(traceevent, "tep_print_funcs", None, [vp])
        self._proto(traceevent, "tep_is_file_bigendian", ctypes.c_bool, [vp])
        self._proto(traceevent, "tep_get_long_size", i, [vp])
        self._proto(libc, "fflush", i, [vp])
        # libtracecmd prints its complaints to stderr; zlperf reports them itself.
        self.tracecmd_set_loglevel(0)
        self.tep_set_loglevel(0)

    def _proto(self, lib: ctypes.CDLL, name: str, restype, argtypes) -> None:
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
        setattr(self, name, fn)


_LIB: Optional[TraceCmdLib] = None


def load_library() -> TraceCmdLib:
    """Load libtracecmd.so.1 and libtraceevent.so.1 once; ZlperfError when either is missing."""
    global _LIB
    if _LIB is not None:
        return _LIB
    libs = []
    for soname, pkg in _SONAMES:
        try:
            libs.append(ctypes.CDLL(soname))
        except OSError:
            raise ZlperfError(_MISSING_LIB.format(lib=soname, pkg=pkg)) from None
    try:
        _LIB = TraceCmdLib(libs[1], libs[0], ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"))
    except AttributeError as exc:  # an older libtracecmd without the reader API
        raise ZlperfError(f"libtracecmd.so.1 lacks {exc}: install libtracecmd1 >= 1.3, "
                          "or use the fast reader") from None
    return _LIB


def check_header(path: str) -> int:
    """The trace.dat file version of ``path``; TraceFormatError for a wrong magic or version."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(32)
    except OSError as exc:
        raise TraceFormatError(path, None, f"cannot read: {exc.strerror}") from None
    if not head.startswith(_MAGIC):
        raise TraceFormatError(path, 0, "not a trace.dat (wrong magic)",
                               "give a file written by trace-cmd record/extract")
    rest = head[len(_MAGIC):]
    if b"\0" not in rest:
        raise TraceFormatError(path, len(head), "file ends inside the trace.dat header",
                               "the file is truncated; record it again")
    text = rest.split(b"\0", 1)[0]
    if not text.isdigit() or int(text) not in (6, 7):
        raise TraceFormatError(path, len(_MAGIC), f"unsupported trace.dat version {text[:8]!r}",
                               "zlperf reads versions 6 and 7")
    return int(text)


def _s(b: Optional[bytes]) -> str:
    return b.decode("utf-8", "replace") if b else ""


def _field_format(f: TepFormatField) -> FieldFormat:
    """The zlperf field model from libtraceevent's parse of the same format text."""
    name = _s(f.name)
    flags = int(f.flags)
    ctype = _s(f.type)
    dynamic = bool(flags & _IS_DYNAMIC)
    rel = bool(flags & _IS_RELATIVE)
    array_len: Optional[int] = None
    if not dynamic and flags & _IS_ARRAY:
        # libtraceevent keeps "[N]" in the type; zlperf's type is the element type.
        bracket = ctype.find("[")
        if bracket >= 0:
            ctype = ctype[:bracket].strip()
        array_len = int(f.arraylen)
    if dynamic:
        # "__data_loc char[]" in both models; rel_loc is flagged, its type says "__rel_loc".
        data_loc = not rel
    else:
        data_loc = False
    return FieldFormat(name, ctype, int(f.offset), int(f.size), bool(flags & _IS_SIGNED),
                       array_len if not dynamic else None, data_loc, rel)


def _event_format(ev: TepEvent) -> EventFormat:
    fields: list[FieldFormat] = []
    for head in (ev.format.common_fields, ev.format.fields):
        p = head
        while p:
            fields.append(_field_format(p.contents))
            p = p.contents.next
    return EventFormat(_s(ev.system), _s(ev.name), int(ev.id), fields, _s(ev.print_fmt_format))


def _parse_cpustats(text: str) -> dict[int, CpuStats]:
    """``CPU: N`` blocks of ``key: value`` lines, as the kernel's per_cpu/cpuN/stats prints them.

    libtracecmd joins the top buffer's blocks and each instance's (after a ``Buffer: NAME``
    line); a later block for the same CPU wins, so an instance recording (`trace-cmd extract
    -B`) shows its own buffer's numbers, as the fast reader does.
    """
    out: dict[int, CpuStats] = {}
    cur: Optional[CpuStats] = None
    keys = {"entries": "entries", "overrun": "overrun", "commit overrun": "commit_overrun",
            "dropped events": "dropped_events", "read events": "read_events"}
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key, val = key.strip(), val.strip()
        if key == "CPU":
            try:
                cur = out.setdefault(int(val), CpuStats(int(val)))
            except ValueError:
                cur = None
        elif cur is not None and key in keys:
            try:
                setattr(cur, keys[key], int(val))
            except ValueError:
                pass
    return out


class LibTraceCmdReader:
    """A :class:`zlperf.events.TraceReader` over libtracecmd (the reference implementation)."""

    def __init__(self, path: str, chunk_events: int = CHUNK_EVENTS):
        self.path = str(path)
        self.chunk_events = chunk_events
        if not os.path.isfile(self.path):
            raise TraceFormatError(self.path, None, "no such file", "give the path of a trace.dat")
        check_header(self.path)
        self._lib = load_library()
        self._handle = self._lib.tracecmd_open(self.path.encode(), _FL_LOAD_NO_PLUGINS | _FL_LOAD_NO_SYSTEM_PLUGINS)
        if not self._handle:
            # libtracecmd refuses the whole file when any section or CPU data is cut or bad.
            raise TraceFormatError(self.path, None, "libtracecmd cannot read this trace.dat "
                                   "(truncated or corrupted headers, sections or CPU data)",
                                   "check it with `trace-cmd dump --summary`; the fast reader "
                                   "recovers what is readable")
        self._tep = self._lib.tracecmd_get_tep(self._handle)
        self._big = bool(self._lib.tep_is_file_bigendian(self._tep))
        self._instances: dict[str, int] = {}
        self._formats_by_id: dict[int, EventFormat] = {}
        self._no_comm: set[int] = set()
        self.info = self._read_info()

    # -- metadata -------------------------------------------------------------------------
    def _read_info(self) -> TraceInfo:
        lib, h = self._lib, self._handle
        version = int(lib.tracecmd_get_in_file_version(h))
        name, ver = ctypes.c_char_p(), ctypes.c_char_p()
        compression = None
        if lib.tracecmd_get_file_compress_proto(h, ctypes.byref(name), ctypes.byref(ver)) == 0 and name.value:
            compression = _s(name.value)
            if compression == "none":
                compression = None
        fmt = f"trace.dat v{version}" + (f" ({compression})" if compression else "")
        info = TraceInfo(path=self.path, format=fmt, version=version, compression=compression)
        info.clock = _s(lib.tracecmd_get_trace_clock(h)) or None
        info.long_size = int(lib.tracecmd_long_size(h))
        info.page_size = int(lib.tracecmd_page_size(h))
        info.cpus = int(lib.tracecmd_cpus(h))
        info.uname = _s(lib.tracecmd_get_uname(h)) or None
        info.cpu_stats = _parse_cpustats(_s(lib.tracecmd_get_cpustats(h)))
        info.buffers = [""]
        for i in range(int(lib.tracecmd_buffer_instances(h))):
            bname = _s(lib.tracecmd_buffer_instance_name(h, i))
            self._instances[bname] = i
            info.buffers.append(bname)
        for i in range(int(lib.tep_get_events_count(self._tep))):
            ev_p = lib.tep_get_event(self._tep, i)
            if not ev_p:
                continue
            ef = _event_format(ev_p.contents)
            self._formats_by_id[ef.id] = ef
            if ef.full_name == "ftrace:blktrace":
                # Synthesized by libtracecmd's blk hack (trace-blk-hack.c), not stored in the file.
                continue
            info.formats[ef.full_name] = ef
        info.symbols = self._kallsyms()
        if info.symbols is None:
            info.warnings.append(f"{self.path}: no kernel symbols (kallsyms) available; addresses stay hex")
        failures = int(lib.tracecmd_get_parsing_failures(h))
        if failures:
            info.warnings.append(f"{self.path}: libtraceevent could not parse {failures} event format(s)")
        return info

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

    def _buffer_handle(self, buffer: str) -> tuple[int, bool]:
        if buffer == "":
            if self._instances and not self._has_data(self._handle):
                # `trace-cmd extract -B NAME` leaves the top buffer empty: the one instance
                # with data is what the user recorded, so "" (the default) reads that (as the
                # fast reader does).
                full = []
                for name, idx in self._instances.items():
                    h = self._lib.tracecmd_buffer_instance_handle(self._handle, idx)
                    if h and self._has_data(h):
                        full.append(h)
                    elif h:
                        self._lib.tracecmd_close(h)
                if len(full) == 1:
                    return full[0], True
                for h in full:
                    self._lib.tracecmd_close(h)
            return self._handle, False
        if buffer not in self._instances:
            raise ZlperfError(f"{self.path}: no buffer (instance) named {buffer!r}; it holds "
                              + ", ".join(repr(b) for b in self.info.buffers))
        h = self._lib.tracecmd_buffer_instance_handle(self._handle, self._instances[buffer])
        if not h:
            raise TraceFormatError(self.path, None, f"libtracecmd cannot open buffer {buffer!r}")
        return h, True

    def chunks(self, events: Optional[Collection[str]] = None, buffer: str = "") -> Iterator[Chunk]:
        """Yield ``buffer``'s events in time order (libtracecmd merges the CPUs), in chunks."""
        lib = self._lib
        handle, own = self._buffer_handle(buffer)
        tep = lib.tracecmd_get_tep(handle) if own else self._tep
        formats = self._formats_by_id
        if own and tep != self._tep:  # instances normally share the top handle's parser
            formats = {}
            for i in range(int(lib.tep_get_events_count(tep))):
                ev_p = lib.tep_get_event(tep, i)
                if ev_p:
                    ef = _event_format(ev_p.contents)
                    formats[ef.id] = ef
        wanted = None if events is None else set(events)
        keep = {eid for eid, ef in formats.items() if wanted is None or ef.full_name in wanted}
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
        head = _REC_HEAD.unpack
        head_size = _REC_HEAD.size
        cpu_out = ctypes.c_int()
        cpu_ref = ctypes.byref(cpu_out)
        page_size = int(lib.tracecmd_page_size(handle)) or self.info.page_size
        corrupt: list[tuple[int, int]] = []
        pending: defaultdict[int, list] = defaultdict(list)
        missed: list = []
        # common_type as the format says (u16 on every kernel so far), in the file's byte order.
        type_of = struct.Struct((">" if self._big else "<")
                                + {1: "B", 2: "H", 4: "I"}.get(type_size, "H")).unpack_from
        unknown: dict[int, int] = {}
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
                seq += 1
                if n >= limit:
                    yield self._build(pending, missed, formats)
                    pending, missed, n = defaultdict(list), [], 0
            if n:
                yield self._build(pending, missed, formats)
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

    def _build(self, pending: dict[int, list], missed: list, formats: dict[int, EventFormat]) -> Chunk:
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
            cols = decode_fields(ef, datas, self._big, dictionary)
            pid_col = cols.get("common_pid")
            pid = pid_col.astype(np.int32) if pid_col is not None else np.full(len(ts), -1, np.int32)
            chunk.batches[ef.full_name] = EventBatch(
                ef.full_name, np.array(ts, dtype=np.uint64), np.array(cpu, dtype=np.int32), pid,
                np.array(seq, dtype=np.int64), cols, dictionary)
            self._learn_comms(pid)
        return chunk

    def _learn_comms(self, pids: np.ndarray) -> None:
        """Fill info.cmdlines for the pids seen so far (libtraceevent offers lookup, no listing)."""
        cmdlines = self.info.cmdlines
        for pid in np.unique(pids).tolist():
            if pid not in cmdlines and pid not in self._no_comm:
                comm = self.comm(pid)
                if comm is None:
                    self._no_comm.add(pid)
                else:
                    cmdlines[pid] = comm

    def close(self) -> None:
        """Close the libtracecmd handle (idempotent)."""
        if getattr(self, "_handle", None):
            self._lib.tracecmd_close(self._handle)
            self._handle = None

    def __enter__(self) -> "LibTraceCmdReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _cstr(raw: bytes) -> str:
    """Bytes up to the first NUL, as text."""
    nul = raw.find(b"\0")
    return (raw if nul < 0 else raw[:nul]).decode("utf-8", "replace")


def decode_fields(ef: EventFormat, datas: list[bytes], big_endian: bool = False,
                  dictionary: Optional[dict] = None) -> dict[str, np.ndarray]:
    """Columns of every field of ``ef`` from raw record payloads (EventBatch type conventions).

    String fields are interned; with ``dictionary`` given, their (codes, values) go there
    (the :attr:`EventBatch.dictionary` encoding).
    """
    n = len(datas)
    width = max((len(d) for d in datas), default=0)
    width = max(width, max((f.offset + f.size for f in ef.fields), default=0))
    # One padded byte matrix: fixed-offset fields become numpy column views.
    raw = np.frombuffer(b"".join(d.ljust(width, b"\0") for d in datas), dtype=np.uint8).reshape(n, width)
    cols: dict[str, np.ndarray] = {}
    for f in ef.fields:
        col = _decode_field(ef, f, raw, datas, big_endian)
        if isinstance(col, tuple):
            col, codes, values = col
            if dictionary is not None:
                dictionary[f.name] = (codes, values)
        cols[f.name] = col
    return cols


def _intern(chunks: Iterator[bytes], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Strings of raw byte runs (cut at NUL), each distinct one decoded once: (column, codes, values)."""
    by_raw: dict[bytes, int] = {}
    by_text: dict[str, int] = {}
    values: list[str] = []
    codes = np.empty(n, dtype=np.int32)
    for i, chunk in enumerate(chunks):
        code = by_raw.get(chunk)
        if code is None:
            text = _cstr(chunk)
            code = by_text.get(text)
            if code is None:
                code = by_text[text] = len(values)
                values.append(text)
            by_raw[chunk] = code
        codes[i] = code
    vals = np.empty(len(values), dtype=object)
    vals[:] = values
    return vals[codes], codes, vals


def _native(arr: np.ndarray) -> np.ndarray:
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)


def _decode_field(ef: EventFormat, f: FieldFormat, raw: np.ndarray, datas: list[bytes],
                  big: bool):
    """One column; string fields come as (column, codes, values)."""
    n = raw.shape[0]
    end = f.offset + f.size
    if f.data_loc or f.rel_loc:
        locs = _native(np.ascontiguousarray(raw[:, f.offset:f.offset + 4]).view(">u4" if big else "<u4")).reshape(n)
        base = end if f.rel_loc else 0
        spans = ((base + (loc & 0xFFFF), loc >> 16) for loc in locs.tolist())
        runs = (d[a:a + ln] for d, (a, ln) in zip(datas, spans))
        if f.is_string:
            # The same few strings (zone names) repeat: decode each once.
            return _intern(runs, n)
        out = np.empty(n, dtype=object)
        for i, chunk in enumerate(runs):
            out[i] = _native(np.frombuffer(chunk[: len(chunk) // f.elem_size * f.elem_size],
                                           dtype=f.dtype(not big)))
        return out
    if f.is_string:
        return _intern((d[f.offset:end] for d in datas), n)
    if ef.full_name == "ftrace:kernel_stack" and f.name == "caller":
        return _kernel_stack(ef, f, datas, big)
    block = np.ascontiguousarray(raw[:, f.offset:end])
    dt = f.dtype(not big)
    if f.array_len:
        return _native(block.view(dt)).reshape(n, f.array_len)
    if f.array_len == 0:  # "type x[]" with no length: rest of the record
        out = np.empty(n, dtype=object)
        for i, d in enumerate(datas):
            tail = d[f.offset:]
            out[i] = _native(np.frombuffer(tail[: len(tail) // f.elem_size * f.elem_size], dtype=dt))
        return out
    return _native(block.view(dt)).reshape(n)


def _kernel_stack(ef: EventFormat, f: FieldFormat, datas: list[bytes], big: bool) -> np.ndarray:
    """ftrace ``kernel_stack``: ``caller`` runs past its declared [8] to the record's end.

    The kernel stores ``size`` entries (older kernels end the list with ULONG_MAX instead);
    returned 2-D uint64, innermost frame first, zero-padded, as wide as the deepest stack.
    """
    word = f.elem_size or 8
    size_f = ef.field("size")
    dt = np.dtype(f"{'>' if big else '<'}u{word}")
    stacks: list[np.ndarray] = []
    for d in datas:
        avail = max(0, (len(d) - f.offset) // word)
        count = avail
        if size_f is not None:
            nbytes = d[size_f.offset:size_f.offset + size_f.size]
            declared = int.from_bytes(nbytes, "big" if big else "little", signed=True)
            count = min(avail, declared) if declared >= 0 else avail
        vals = np.frombuffer(d[f.offset:f.offset + count * word], dtype=dt).astype(np.uint64)
        stop = np.nonzero(vals == np.uint64((1 << (8 * word)) - 1))[0]
        if stop.size:
            vals = vals[: stop[0]]
        stacks.append(vals)
    depth = max([f.array_len or 0] + [len(s) for s in stacks])
    out = np.zeros((len(stacks), depth), dtype=np.uint64)
    for i, s in enumerate(stacks):
        out[i, : len(s)] = s
    return out
