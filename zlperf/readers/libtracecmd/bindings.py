"""ctypes bindings of libtracecmd.so.1 and libtraceevent.so.1 (no C build): structures and prototypes.

Structure layouts as in /usr/include/traceevent/event-parse.h of libtraceevent 1.7.1 (Debian 12);
tests/test_libtracecmd_reader.py compiles offsetof() checks against the installed headers.
"""

from __future__ import annotations

__all__ = ["TraceCmdLib", "load_library", "record_fits", "TepRecord", "TepEvent", "TepFormat", "TepFormatField",
           "REC_HEAD", "OPEN_FLAGS", "HandleOwner"]

import ctypes
import ctypes.util
import struct
from typing import Optional

from zlperf.errors import ZlperfError

# tracecmd_open() flags (trace-cmd.h): raw field values need no print plugins.
_FL_LOAD_NO_PLUGINS = 1 << 0
_FL_LOAD_NO_SYSTEM_PLUGINS = 1 << 1
#: The flags zlperf opens files with.
OPEN_FLAGS = _FL_LOAD_NO_PLUGINS | _FL_LOAD_NO_SYSTEM_PLUGINS

# enum tep_format_flags (event-parse.h)
_IS_ARRAY, _IS_SIGNED, _IS_DYNAMIC, _IS_RELATIVE = 1, 4, 16, 256

_MISSING_LIB = "{lib} not found: apt install {pkg}, or use the fast reader"
#: (soname, Debian package) loaded in this order: libtracecmd needs libtraceevent's symbols.
_SONAMES = (("libtraceevent.so.1", "libtraceevent1"), ("libtracecmd.so.1", "libtracecmd1"))


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
REC_HEAD = struct.Struct("@QQqiiPi")  # ts, offset, missed_events, record_size, size, data, cpu
assert (struct.calcsize("@QQqi"), struct.calcsize("@QQqii0P"), REC_HEAD.size - 4) == \
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


class HandleOwner:
    """A holder of libtracecmd handles: a context manager that calls ``close()`` on exit, and
    again (errors ignored) when collected."""

    def close(self) -> None:
        """Release the handles (idempotent)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # the interpreter may be shutting down: nothing left to report to
            pass
