"""trace-cmd's own ``tracecmd`` Python API (Trace, Event, Field...), served by zlperf's ctypes binding.

Scripts written for upstream's SWIG bindings (python/tracecmd.py in trace-cmd) run unchanged
with ``import zlperf.tracecmd as tracecmd`` or under ``zlperf tracecmd-script SCRIPT``.

Compatibility notes (same behaviour as upstream unless said):
- ``num_field`` / ``int(field)`` return libtraceevent's ``tep_read_number_field`` value: the
  field's bytes as an *unsigned* number (a negative ``int`` field reads as 2**32 - n), None for
  fields that are not 1, 2, 4 or 8 bytes.
- ``str_field`` / ``str(field)`` decode bytes up to the first NUL as UTF-8 (invalid bytes
  kept with ``surrogateescape``, as SWIG does). Unlike upstream, ``__rel_loc`` strings are
  followed instead of read as raw bytes, and reads stop at the record's end.
- ``stack_field`` names unknown addresses as hex instead of crashing.
- Extensions: ``Trace(filename, buffer=NAME)`` reads an instance buffer, ``Trace.buffers``,
  ``Trace.close()`` and ``with Trace(...)``.
"""

from __future__ import annotations

__all__ = ["Trace", "Event", "Field", "FieldError", "FileFormatError", "PEvent", "TraceSeq"]

import ctypes
from collections.abc import Mapping
from typing import Iterator, Optional

from zlperf.errors import TraceFormatError, warn
from zlperf.formats import format_problem
from zlperf.readers.libtracecmd import load_library, open_checked, record_fits
from zlperf.readers.libtracecmd.bindings import HandleOwner
from zlperf.readers.libtracecmd.decode import SYNTHESIZED, event_format

_IS_DYNAMIC, _IS_RELATIVE = 16, 256


def _format_problems(lib, tep: int) -> list[str]:
    """One line per event whose format is damaged (its fields then read as None or garbage)."""
    out = []
    for i in range(int(lib.tep_get_events_count(tep))):
        ev = lib.tep_get_event(tep, i)
        if ev:
            fmt = event_format(ev.contents)
            problem = None if fmt.full_name in SYNTHESIZED else format_problem(fmt)
            if problem:
                out.append(f"event {fmt.full_name}: its format is damaged ({problem}); do not trust its fields")
    return out


class FileFormatError(TraceFormatError):
    """The file cannot be opened as a trace.dat (upstream's exception, now also a ZlperfError)."""


class FieldError(Exception):
    """A field read as a number that is not one (upstream's exception)."""


def _text(raw: bytes) -> str:
    nul = raw.find(b"\0")
    return (raw if nul < 0 else raw[:nul]).decode("utf-8", "surrogateescape")


class TraceSeq:
    """Wrapper of a libtraceevent ``struct trace_seq`` (upstream API shape)."""

    def __init__(self, trace_seq: int):
        self._trace_seq = trace_seq

    def puts(self, s: str) -> int:
        """Append ``s``; returns the number of bytes written."""
        lib = load_library()
        fn = lib.te.trace_seq_puts
        fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p]
        return int(fn(self._trace_seq, s.encode()))


class PEvent:
    """The ``tep_handle`` of a trace (upstream's ``PEvent``): byte order of the file."""

    def __init__(self, pevent: int):
        self._pevent = pevent

    @property
    def file_endian(self) -> str:
        """``'<'`` or ``'>'``, for ``struct.unpack`` of raw field data."""
        return ">" if load_library().tep_is_file_bigendian(self._pevent) else "<"

    def register_event_handler(self, subsys: str, event_name: str, callback) -> None:
        """Upstream hooks trace-cmd report's printing; zlperf never prints through libtraceevent."""
        raise NotImplementedError(
            "register_event_handler is for `trace-cmd report -P` plugins; zlperf runs scripts "
            "that read events (Trace.read_next_event ...), not print hooks")


class Field:
    """One field of one event record: ``int(f)``, ``str(f)``, ``f.data`` (raw bytes)."""

    def __init__(self, record, field):
        self._record = record  # the owning Event (keeps the record alive)
        self._field = field  # POINTER(TepFormatField)

    @property
    def data(self) -> bytes:
        """The field's bytes; for ``__data_loc`` fields the dynamic array they point to."""
        return self._record._field_bytes(self._field)

    def __int__(self) -> int:
        val = self._record._number(self._field)
        if val is None:
            raise FieldError("Not a number field")
        return val

    __long__ = __int__

    def __index__(self) -> int:
        return int(self)

    def __str__(self) -> str:
        return self._record._string(self._field)


class Event(Mapping):
    """One event record: name, ts, cpu, pid, comm, type; its own fields by ``ev["name"]``."""

    def __init__(self, trace: "Trace", record, format):
        self._trace = trace
        self._lib = trace._lib
        self._pevent = trace._pevent
        self._record = record  # POINTER(TepRecord); this Event owns one reference
        self._format = format  # POINTER(TepEvent)
        rec = record.contents
        self._ts = int(rec.ts)
        self._cpu = int(rec.cpu)
        if not record_fits(rec.offset, rec.record_size, rec.size, trace.page_size):
            raise FileFormatError(trace.filename, int(rec.offset),
                                  f"record on CPU {rec.cpu} has an impossible length {rec.size}",
                                  "the ring-buffer data is corrupted")
        self._raw = ctypes.string_at(rec.data, rec.size)

    def __del__(self):
        rec, self._record = getattr(self, "_record", None), None
        trace = getattr(self, "_trace", None)
        if rec and trace is not None and trace._handle:
            self._lib.tracecmd_free_record(rec)

    def __str__(self) -> str:
        return "%d.%09d CPU%d %s: pid=%d comm=%s type=%d" % (
            self.ts // 1000000000, self.ts % 1000000000, self.cpu, self.name,
            self.num_field("common_pid"), self.comm, self.type)

    # Mapping over the event's own (non-common) fields, as upstream's keys().
    def __getitem__(self, n: str) -> Field:
        f = self._lib.tep_find_field(self._format, n.encode()) if self._format else None
        if not f:
            raise KeyError("no field '%s'" % n)
        return Field(self, f)

    def keys(self) -> list[str]:  # type: ignore[override]
        """Names of the event's own fields (common_* excluded), in format order."""
        names = []
        if self._format:
            p = self._format.contents.format.fields
            while p:
                names.append(p.contents.name.decode())
                p = p.contents.next
        return names

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())

    def __contains__(self, n) -> bool:
        return isinstance(n, str) and n in self.keys()

    @property
    def comm(self) -> str:
        """Command name of the event's pid, from the file's saved cmdlines (``<...>`` if none)."""
        raw = self._lib.tep_data_comm_from_pid(self._pevent, self.pid)
        return raw.decode("utf-8", "surrogateescape") if raw else "<...>"

    @property
    def cpu(self) -> int:
        """CPU the event was recorded on."""
        return self._cpu

    @property
    def name(self) -> str:
        """Event name without its system, e.g. ``mm_zone_locked``."""
        return self._format.contents.name.decode() if self._format else ""

    @property
    def system(self) -> str:
        """The event's system, e.g. ``kmem`` (extension)."""
        return self._format.contents.system.decode() if self._format else ""

    @property
    def pid(self) -> int:
        """``common_pid``."""
        return int(self._lib.tep_data_pid(self._pevent, self._record))

    @property
    def ts(self) -> int:
        """Timestamp in trace-clock nanoseconds."""
        return self._ts

    @property
    def type(self) -> int:
        """The event id (``common_type``)."""
        return int(self._lib.tep_data_type(self._pevent, self._record))

    def _any_field(self, name: str):
        if not self._format:
            return None
        f = self._lib.tep_find_any_field(self._format, name.encode())
        return f or None

    def num_field(self, name: str) -> Optional[int]:
        """Field ``name`` (common ones too) as an unsigned number; None if absent or not numeric."""
        f = self._any_field(name)
        return None if f is None else self._number(f)

    def str_field(self, name: str) -> Optional[str]:
        """Field ``name`` as text up to its first NUL; None if absent."""
        f = self._any_field(name)
        return None if f is None else self._string(f)

    def stack_field(self, long_size: int) -> list[str]:
        """Function names of a stack event's ``caller`` words, up to the -1 end marker."""
        f = self._any_field("caller")
        if f is None:
            raise TypeError("Event doesn't have caller field")
        raw = self._raw
        order = "big" if self._trace._big else "little"
        out = []
        for pos in range(f.contents.offset, len(raw) - long_size + 1, long_size):
            addr = int.from_bytes(raw[pos:pos + long_size], order)
            if (long_size == 8 and addr == (1 << 64) - 1) or (addr & 0xFFFFFFFF) == 0xFFFFFFFF:
                break
            fn = self._lib.tep_find_function(self._pevent, addr)
            out.append(fn.decode() if fn else "0x%x" % addr)
        return out

    # -- raw access shared with Field --------------------------------------------------------
    def _number(self, f) -> Optional[int]:
        val = ctypes.c_ulonglong()
        if self._lib.tep_read_number_field(f, self._record.contents.data, ctypes.byref(val)):
            return None
        return int(val.value)

    def _dynamic(self, f) -> Optional[tuple[int, int]]:
        """(start, length) of a __data_loc / __rel_loc field's payload in the record."""
        ff = f.contents
        if not ff.flags & _IS_DYNAMIC and not (ff.type or b"").startswith(b"__data_loc "):
            return None
        loc = self._number(f)
        if loc is None:
            return None
        start = loc & 0xFFFF
        if ff.flags & _IS_RELATIVE:  # __rel_loc (Linux 5.19): relative to the field's end
            start += ff.offset + ff.size
        return start, loc >> 16

    def _field_bytes(self, f) -> bytes:
        dyn = self._dynamic(f)
        ff = f.contents
        if dyn is not None:
            return self._raw[dyn[0]:dyn[0] + dyn[1]]
        return self._raw[ff.offset:ff.offset + ff.size]

    def _string(self, f) -> str:
        dyn = self._dynamic(f)
        ff = f.contents
        if dyn is not None:
            return _text(self._raw[dyn[0]:])
        return _text(self._raw[ff.offset:ff.offset + ff.size])


class Trace(HandleOwner):
    """A trace.dat file, read through libtracecmd (upstream's ``tracecmd.Trace``); a context manager.

    Events hold a reference to their Trace, so none is alive when it is collected and closed.
    """

    def __init__(self, filename: str, buffer: Optional[str] = None):
        self._lib = load_library()
        self._handle = None
        self._top = None
        self.filename = str(filename)
        try:  # zlperf's own checks and a probe in a child first: libtracecmd crashes on some damaged files
            top, notes = open_checked(self._lib, self.filename)
        except TraceFormatError as exc:
            raise FileFormatError(exc.path, exc.offset, exc.problem, exc.hint) from None
        for note in notes + _format_problems(self._lib, self._lib.tracecmd_get_tep(top)):
            warn(f"{self.filename}: {note}")
        self._top = top
        names = [self._lib.tracecmd_buffer_instance_name(top, i).decode()
                 for i in range(self._lib.tracecmd_buffer_instances(top))]
        self.buffers = [""] + names  #: instance names in the file, "" = top (extension)
        if buffer:
            if buffer not in names:
                self.close()
                raise FileFormatError(self.filename, None, f"no buffer named {buffer!r}",
                                      "buffers: " + ", ".join(repr(b) for b in self.buffers))
            self._handle = self._lib.tracecmd_buffer_instance_handle(top, names.index(buffer))
        else:
            self._handle = top
        self._pevent = self._lib.tracecmd_get_tep(self._handle)
        self._big = bool(self._lib.tep_is_file_bigendian(self._pevent))

    @property
    def cpus(self) -> int:
        """Number of CPUs with data in this buffer."""
        return int(self._lib.tracecmd_cpus(self._handle))

    @property
    def page_size(self) -> int:
        """Ring-buffer page size of this buffer (extension)."""
        return int(self._lib.tracecmd_page_size(self._handle))

    @property
    def long_size(self) -> int:
        """Size of a kernel ``long`` on the recording host."""
        return int(self._lib.tracecmd_long_size(self._handle))

    @property
    def pevent(self) -> PEvent:
        """The trace's event parser (extension; upstream keeps it private)."""
        return PEvent(self._pevent)

    def _event(self, rec) -> Optional[Event]:
        if not rec:
            return None
        etype = self._lib.tep_data_type(self._pevent, rec)
        fmt = self._lib.tep_find_event(self._pevent, etype)
        return Event(self, rec, fmt)  # the Event owns the record reference from here

    def read_event(self, cpu: int) -> Optional[Event]:
        """Next event of ``cpu``; None at its end."""
        return self._event(self._lib.tracecmd_read_data(self._handle, cpu))

    def read_event_at(self, offset: int) -> Optional[Event]:
        """The event at file ``offset`` (as ``trace-cmd report`` prints with ``-O``)."""
        cpu = ctypes.c_int()
        return self._event(self._lib.tracecmd_read_at(self._handle, offset, ctypes.byref(cpu)))

    def read_next_event(self) -> Optional[Event]:
        """Next event of any CPU, in timestamp order; None at the end."""
        cpu = ctypes.c_int()
        return self._event(self._lib.tracecmd_read_next_data(self._handle, ctypes.byref(cpu)))

    def peek_event(self, cpu: int) -> Optional[Event]:
        """The event :meth:`read_event` would return next, without consuming it."""
        rec = self._lib.tracecmd_peek_data(self._handle, cpu)
        if not rec:
            return None
        self._lib.tracecmd_record_ref(rec)  # upstream's tracecmd_peek_data_ref()
        return self._event(rec)

    def close(self) -> None:
        """Release the file (extension; events read before must not be used afterwards)."""
        lib = self._lib
        if self._handle and self._handle != self._top:
            lib.tracecmd_close(self._handle)
        if self._top:
            lib.tracecmd_close(self._top)
        self._handle = self._top = None
