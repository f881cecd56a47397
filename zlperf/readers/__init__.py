"""Trace readers behind one interface (:class:`zlperf.events.TraceReader`) and ``open_trace``.

``fast`` (:mod:`.tracedat`): numpy over a trace.dat's ring-buffer pages, no native library;
``libtracecmd`` (:mod:`.libtracecmd`): the reference reader through ctypes over the system's
libtracecmd.so.1; a perf.data is always read by :mod:`.perfdata`.

Read a trace from Python::

    from zlperf.readers import open_trace
    with open_trace("trace.dat") as reader:
        for chunk in reader.chunks():
            for name, batch in chunk.batches.items():
                print(name, len(batch), batch.ts[:3], list(batch.fields))
"""

from __future__ import annotations

__all__ = ["open_trace", "READERS"]

import os
from pathlib import Path
from typing import Optional, Union

from zlperf.errors import ZlperfError
from zlperf.events import TraceReader
from zlperf.safeio import spool_stream

#: Reader names ``open_trace`` accepts ("auto" picks the fast reader).
READERS = ("auto", "fast", "libtracecmd")


def open_trace(path: Union[str, Path], reader: str = "auto", *, kallsyms: Optional[str] = None,
               zones: Optional[str] = None, jobs: Optional[int] = None) -> TraceReader:
    """Open a trace.dat or perf.data; raises :class:`ZlperfError` (one line) on bad input.

    ``kallsyms``: a kallsyms file to symbolize with instead of the one saved in the trace
    (perf.data: instead of searching beside the file). ``zones``: a zone-lock sidecar to read
    instead of ``PATH.zones.json``. Both are resolved here, once: the reader's ``info`` is final.
    ``jobs``: processes the fast reader decodes with (None: the cores available, for large files; the
    chunks are the same whatever the number); :func:`zlperf.analyze` analyses the CPUs of a trace.dat or
    perf.data in as many parts.
    A pipe (``<(...)``, ``/dev/stdin``) is copied to a temporary file first, removed on close.
    """
    from zlperf.zonelocks import load_zone_locks

    if reader not in READERS:
        raise ZlperfError(f"unknown reader {reader!r}: choose one of {', '.join(READERS)}")
    path = str(path)
    spooled = spool_stream(path, "trace file (trace.dat or perf.data)")
    real = spooled or path
    try:
        zone_locks = load_zone_locks(path, zones) or {}
        with open(real, "rb") as fh:
            head = fh.read(8)
        if head.startswith(b"PERFILE2"):
            from zlperf.readers.perfdata import PerfDataReader  # perf record output: the native perf.data reader

            cls: type = PerfDataReader
        elif reader == "libtracecmd":
            from zlperf.readers.libtracecmd import LibTraceCmdReader

            cls = LibTraceCmdReader
        else:
            from zlperf.readers.tracedat import FastTraceReader

            cls = FastTraceReader
        extra = {"jobs": jobs} if cls.__name__ in ("FastTraceReader", "PerfDataReader") else {}
        opened: TraceReader = cls(real, kallsyms=kallsyms, zone_locks=zone_locks, name=path, **extra)
    except BaseException:
        if spooled:
            os.unlink(spooled)
        raise
    if spooled:
        _remove_on_close(opened, spooled)
    return opened


def _remove_on_close(reader: TraceReader, tmp: str) -> None:
    close = reader.close

    def close_and_remove() -> None:
        try:
            close()
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    reader.close = close_and_remove  # type: ignore[method-assign]
