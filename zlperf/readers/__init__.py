"""Trace readers behind one interface (:class:`zlperf.events.TraceReader`) and ``open_trace``.

``fast``: numpy over the file's ring-buffer pages (no native library needed); ``libtracecmd``:
the reference reader through ctypes over the system's libtracecmd.so.1.

Read a trace from Python::

    from zlperf.readers import open_trace
    with open_trace("trace.dat") as reader:
        for chunk in reader.chunks():
            for name, batch in chunk.batches.items():
                print(name, len(batch), batch.ts[:3], list(batch.fields))
"""

from __future__ import annotations

__all__ = ["open_trace", "READERS"]

from pathlib import Path
from typing import Union

from zlperf.errors import ZlperfError
from zlperf.events import TraceReader

#: Reader names ``open_trace`` accepts ("auto" picks the fast reader).
READERS = ("auto", "fast", "libtracecmd")


def open_trace(path: Union[str, Path], reader: str = "auto") -> TraceReader:
    """Open a trace.dat with the chosen reader; raises :class:`ZlperfError` (one line) on bad input."""
    if reader not in READERS:
        raise ZlperfError(f"unknown reader {reader!r}: choose one of {', '.join(READERS)}")
    path = str(path)
    if not Path(path).exists():
        raise ZlperfError(f"{path}: no such file")
    if Path(path).is_dir():
        raise ZlperfError(f"{path}: is a directory, not a trace.dat")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(b"PERFILE2"):
        from zlperf.readers.perfdata import PerfDataReader  # perf record output: the native perf.data reader

        return PerfDataReader(path)
    if reader == "libtracecmd":
        from zlperf.readers.libtracecmd import LibTraceCmdReader

        return LibTraceCmdReader(path)
    from zlperf.readers.fast import FastTraceReader

    return FastTraceReader(path)
