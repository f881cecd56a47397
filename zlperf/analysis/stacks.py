"""Kernel stacks of events: the ftrace ``kernel_stack`` event that follows an event on its CPU
(trace-cmd -T, tracefs options/stacktrace) or perf's ``common_callchain`` column (perf -g), and
the caller in a stack: the first frame outside the tracing and locking code.
"""

from __future__ import annotations

__all__ = ["stacks_of", "CallerResolver", "StackFollower", "LOCKING_FRAME_PREFIXES", "is_locking_frame",
           "first_outside_frame"]

from typing import Callable, Optional, Sequence

import numpy as np

from zlperf.arrays import distinct
from zlperf.events import Chunk, TraceInfo


#: Frames of the tracing and locking machinery itself, skipped to find the lock's caller.
LOCKING_FRAME_PREFIXES: tuple[str, ...] = (
    "trace_event_raw_event_", "perf_trace_", "__traceiter_", "perf_tp_event", "trace_contention_",
    "__bpf_trace_", "bpf_trace_run",
    "_raw_spin_lock", "_raw_read_lock", "_raw_write_lock", "do_raw_spin_lock", "do_raw_read_lock",
    "do_raw_write_lock", "queued_spin_lock", "native_queued_spin_lock", "__pv_queued_spin_lock",
    "pv_queued_spin_lock", "queued_read_lock", "queued_write_lock", "__queued_",
    "spin_lock", "_spin_lock", "rt_spin_lock", "rtlock_",
    "rwsem_down_", "down_read", "down_write", "__down", "down_killable", "down_interruptible",
    "down_timeout", "down_trylock",
    "mutex_lock", "__mutex_lock", "mutex_spin_on_owner", "osq_lock",
    "rt_mutex", "__rt_mutex", "percpu_down_", "__percpu_down_", "percpu_rwsem_",
    "lock_acquire", "__lock_acquire",
    # wrappers that only take a lock for their caller (the lruvec lock, seen on 6.18)
    "folio_lruvec_lock", "lock_page_lruvec", "folio_lock_lruvec",
)


def is_locking_frame(name: str) -> bool:
    """True for frames of the tracing/locking code (skipped when looking for the caller)."""
    return name.startswith(LOCKING_FRAME_PREFIXES) or name.endswith("_slowpath")


def first_outside_frame(
    frames: Sequence[int], function_of: Callable[[int], Optional[str]]
) -> tuple[Optional[int], Optional[str]]:
    """(address, function) of the innermost frame that is not locking code; (None, None) if none."""
    for addr in frames:
        if not addr:
            break
        name = function_of(int(addr))
        if name is None:
            return int(addr), None
        if not is_locking_frame(name):
            return int(addr), name
    return None, None


def stacks_of(chunk: Chunk, name: str) -> Optional[np.ndarray]:
    """Per row of batch ``name``: its kernel frames (uint64 array, innermost first) or None.

    A kernel_stack belongs to the event just before it on the same CPU. A stack that
    would land in the next chunk is not seen (its event keeps None): readers cut chunks at
    page boundaries, so this is rare, and it costs a caller, never a wrong one.
    """
    target = chunk.batches.get(name)
    if target is None or not len(target):
        return None
    if "common_callchain" in target.fields:
        return target.fields["common_callchain"]
    stack_batches = [b for n, b in chunk.batches.items() if n.endswith(":kernel_stack") and len(b)]
    if not stack_batches:
        return None
    cpus, seqs, target_rows, stack_batches_of, stack_rows = [], [], [], [], []  # per batch, joined below
    for n, b in chunk.batches.items():
        if not len(b):
            continue
        k = len(b)
        cpus.append(b.cpu.astype(np.int64))
        seqs.append(b.seq.astype(np.int64))
        target_rows.append(np.arange(k) if n == name else np.full(k, -1))
        which = next((i for i, sb in enumerate(stack_batches) if sb is b), -1)
        stack_batches_of.append(np.full(k, which))
        stack_rows.append(np.arange(k) if which >= 0 else np.full(k, -1))
    order = np.lexsort((np.concatenate(seqs), np.concatenate(cpus)))
    cpu = np.concatenate(cpus)[order]
    target_row = np.concatenate(target_rows)[order]
    stack_batch = np.concatenate(stack_batches_of)[order]
    stack_row = np.concatenate(stack_rows)[order]
    owners = np.flatnonzero((stack_batch[1:] >= 0) & (target_row[:-1] >= 0) & (cpu[1:] == cpu[:-1]))
    out = np.full(len(target), None, dtype=object)
    for p in owners:
        frames = stack_batches[stack_batch[p + 1]].fields["caller"][stack_row[p + 1]]
        zero = np.flatnonzero(frames == 0)
        out[target_row[p]] = frames[: zero[0]] if len(zero) else frames
    return out


class CallerResolver:
    """First frame outside the locking code, per stack, with lookups cached per address."""

    def __init__(self, info: TraceInfo):
        self.info = info
        self._fn: dict[int, Optional[str]] = {}

    def function_of(self, addr: int) -> Optional[str]:
        """Name of the function containing ``addr`` (None when unknown)."""
        fn = self._fn.get(addr, "")
        if fn == "":
            symbols = self.info.symbols
            fn = symbols.function(addr) if symbols is not None and len(symbols) else None
            self._fn[addr] = fn
        return fn

    def callers(self, stacks: Optional[np.ndarray], n: int) -> np.ndarray:
        """uint64 caller address per row (0 where no stack)."""
        out = np.zeros(n, dtype=np.uint64)
        if stacks is None:
            return out
        cache: dict[bytes, int] = {}
        for i, frames in enumerate(stacks):
            if frames is None or len(frames) == 0:
                continue
            key = np.asarray(frames, dtype=np.uint64).tobytes()
            c = cache.get(key)
            if c is None:
                addr, _ = first_outside_frame(frames, self.function_of)
                c = cache[key] = addr or 0
            out[i] = c
        return out


class StackFollower:
    """:func:`stacks_of` across chunk boundaries.

    When an event is the last of its CPU in a chunk, its kernel_stack may open the next chunk.
    The returned arrays stay referenced here until then and get the frames filled in late, so
    adapters that keep the arrays until the end of the stream (the stock ABI) lose no stack.
    """

    def __init__(self, name: str):
        self.name = name
        self._waiting: dict[int, tuple[np.ndarray, int]] = {}  # cpu -> (stacks array, row)

    def stacks(self, chunk: Chunk) -> Optional[np.ndarray]:
        """Per row of batch ``name`` in ``chunk``: frames or None (maybe filled by a later chunk)."""
        self._fill_from(chunk)
        out = stacks_of(chunk, self.name)
        target = chunk.batches.get(self.name)
        if target is None or not len(target) or "common_callchain" in target.fields:
            return out
        if out is None:  # no stack in this chunk (yet): the last event's may open the next one
            out = np.full(len(target), None, dtype=object)
        last_seq: dict[int, int] = {}
        for b in chunk.batches.values():
            if len(b):
                for cpu in distinct(b.cpu).tolist():
                    m = int(b.seq[b.cpu == cpu].max())
                    last_seq[cpu] = max(last_seq.get(cpu, m), m)
        for cpu in distinct(target.cpu).tolist():
            rows = np.flatnonzero(target.cpu == cpu)
            row = int(rows[np.argmax(target.seq[rows])])
            if int(target.seq[row]) == last_seq[cpu] and out[row] is None:
                self._waiting[cpu] = (out, row)
        return out

    def _fill_from(self, chunk: Chunk) -> None:
        if not self._waiting:
            return
        first: dict[int, tuple[int, str, int]] = {}  # cpu -> (seq, batch name, row) of its first event
        for name, b in chunk.batches.items():
            for cpu in list(self._waiting):
                rows = np.flatnonzero(b.cpu == cpu) if len(b) else ()
                if len(rows):
                    row = int(rows[np.argmin(b.seq[rows])])
                    if cpu not in first or int(b.seq[row]) < first[cpu][0]:
                        first[cpu] = (int(b.seq[row]), name, row)
        for cpu, (_, name, row) in first.items():
            arr, at = self._waiting.pop(cpu)
            if name.endswith(":kernel_stack"):
                frames = chunk.batches[name].fields["caller"][row]
                zero = np.flatnonzero(frames == 0)
                arr[at] = frames[: zero[0]] if len(zero) else frames
