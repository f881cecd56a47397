"""Events that arrive one at a time (perf script handlers, trace-cmd's Python API) as chunks.

Front ends that get events as Python values append rows here; every ``chunk_events`` rows
become a :class:`~zlperf.events.Chunk` of columns fed to the one
:class:`~zlperf.analysis.core.Analyzer`. Nothing is computed here.
"""

from __future__ import annotations

__all__ = ["RowCollector", "column"]

from typing import Optional

import numpy as np

from zlperf.analysis.core import Analyzer
from zlperf.analysis.options import AnalysisOptions
from zlperf.analysis.result import AnalysisResult
from zlperf.events import Chunk, EventBatch, TraceInfo

_KERNEL_HALF = 1 << 63  # kernel text is in the upper half of the address space (x86-64, arm64)


def _text(v) -> str:
    if isinstance(v, str):
        return v
    return bytes(v).split(b"\0", 1)[0].decode("utf-8", "replace")


def column(values: list) -> np.ndarray:
    """A numpy column from Python values: ints keep their range, strings stay str, stacks 1-D arrays.

    Strings may come as str, bytes or bytearray (perf switches a field to bytearray for the
    rest of a session once one value is not printable). Call chains may be lists of perf's
    frame dicts (kernel frames kept) or of addresses.
    """
    first = values[0]
    if isinstance(first, (str, bytearray, bytes)):
        col = np.empty(len(values), dtype=object)
        col[:] = [_text(v) for v in values]
        return col
    if isinstance(first, (list, tuple)) or first is None:
        col = np.empty(len(values), dtype=object)
        for i, v in enumerate(values):
            if not v:
                col[i] = np.empty(0, dtype=np.uint64)
            elif isinstance(v[0], dict):
                col[i] = np.array([f["ip"] for f in v if f.get("ip", 0) >= _KERNEL_HALF], dtype=np.uint64)
            else:
                col[i] = np.asarray(v, dtype=np.uint64)
        return col
    if max(values) >= 1 << 63:  # unsigned kernel addresses as big ints
        return np.array(values, dtype=np.uint64)
    return np.array(values, dtype=np.int64)


class RowCollector:
    """Rows per event name; a chunk for the analyzer every ``chunk_events`` rows.

    A row is ``(seq, cpu, ts_ns, pid, *field values)`` with ``seq`` increasing in arrival
    order, which both perf script and trace-cmd's read_next_event give in time order.
    """

    def __init__(self, info: TraceInfo, options: Optional[AnalysisOptions] = None, chunk_events: int = 65536):
        self.info = info
        self.analyzer = Analyzer(info, options)
        self.chunk_events = chunk_events
        self._rows: dict[str, list] = {}
        self._names: dict[str, tuple] = {}
        self._comms: dict[int, str] = {}
        self._pending = 0
        self.seq = 0

    def add(self, name: str, cpu: int, ts_ns: int, pid: int, field_names: tuple, values: tuple,
            comm: Optional[str] = None) -> None:
        """One event: its name ("system:event"), common values, fields in format order, and the
        task's name when the source gives it with the event."""
        if comm is not None:
            self._comms[pid] = comm
        rows = self._rows.get(name)
        if rows is None:
            rows = self._rows[name] = []
            self._names[name] = field_names
        self.seq += 1
        rows.append((self.seq, cpu, ts_ns, pid) + tuple(values))
        self._pending += 1
        if self._pending >= self.chunk_events:
            self.flush()

    def flush(self) -> None:
        """Feed what is buffered to the analyzer."""
        if not self._pending:
            return
        chunk = Chunk(comms=self._comms)
        for name, rows in self._rows.items():
            if rows:
                chunk.batches[name] = self._batch(name, self._names[name], rows)
        self._rows = {}
        self._comms = {}
        self._pending = 0
        self.analyzer.feed(chunk)

    def result(self) -> AnalysisResult:
        """Flush and return the analysis result."""
        self.flush()
        return self.analyzer.result()

    @staticmethod
    def _batch(name: str, field_names: tuple, rows: list) -> EventBatch:
        cols = list(zip(*rows))
        seq, cpu, ts, pid = cols[:4]
        fields = {}
        for fname, values in zip(field_names, cols[4:]):
            if fname == "common_callchain" and not any(len(v) if v is not None else 0 for v in values):
                continue  # not recorded with call chains
            fields[fname] = column(list(values))
        return EventBatch(name=name, ts=np.array(ts, dtype=np.uint64), cpu=np.array(cpu, dtype=np.int32),
                          pid=np.array(pid, dtype=np.int32), seq=np.array(seq, dtype=np.int64), fields=fields)
