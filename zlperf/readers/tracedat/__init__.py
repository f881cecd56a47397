"""trace.dat (trace-cmd file versions 6 and 7) read without native code: container, pages, fields, reader.

``container`` parses the metadata, ``pages`` hands out each CPU's pages (``compression`` inflates
them, bounded), ``ringbuffer`` walks the record headers and ``fields`` gathers the columns.
"""

from __future__ import annotations

__all__ = ["FastTraceReader", "TraceDatFile", "BufferInfo", "CpuData", "PageRun", "RUN_BYTES", "MAGIC"]

from zlperf.readers.tracedat.container import MAGIC, TraceDatFile
from zlperf.readers.tracedat.options import BufferInfo, CpuData
from zlperf.readers.tracedat.pages import RUN_BYTES, PageRun
from zlperf.readers.tracedat.reader import FastTraceReader
