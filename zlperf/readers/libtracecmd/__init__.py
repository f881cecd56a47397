"""trace.dat through the system's libtracecmd.so.1 / libtraceevent.so.1 (ctypes; no C build).

``bindings`` declares the C structures and prototypes, ``safety`` keeps the library's crashes on
damaged files out of the interpreter, ``decode`` turns its records into columns, ``reader`` is the
:class:`zlperf.events.TraceReader`.
"""

from __future__ import annotations

__all__ = ["LibTraceCmdReader", "TraceCmdLib", "load_library", "record_fits", "open_checked", "check_file",
           "decode_fields", "TepRecord", "TepEvent", "TepFormat", "TepFormatField"]

from zlperf.readers.libtracecmd.bindings import (TepEvent, TepFormat, TepFormatField, TepRecord, TraceCmdLib,
                                                 load_library, record_fits)
from zlperf.readers.libtracecmd.decode import decode_fields
from zlperf.readers.libtracecmd.reader import LibTraceCmdReader
from zlperf.readers.libtracecmd.safety import check_file, open_checked
