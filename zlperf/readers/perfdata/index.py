"""The sample index of a perf.data data section, built in one windowed walk with memory flat in the file size.

Per sample the index needs its position, time, CPU, event and tid (28 bytes): for millions of samples
that is more than the rest of a report, so it is written to an unlinked temporary file as the walk
goes and read back one chunk at a time. What the walk keeps in memory is per distinct value (last
time per CPU) or per non-sample record (task names, lost events).

Order (see :mod:`.records`): if every CPU's samples are time-ordered in file order, chunks follow
the file. Otherwise the spilled samples are sorted in runs of :data:`RUN_SAMPLES` by (time, file
position) and the runs are merged a block at a time: the same order as one global sort.
"""

from __future__ import annotations

__all__ = ["SampleIndex", "index_records", "RUN_SAMPLES"]

import os
import tempfile
from typing import BinaryIO, Callable, Iterator, Optional

import numpy as np

from zlperf.readers.perfdata.layout import TYPE_TRACEPOINT, PerfAttr, SampleLayout
from zlperf.readers.perfdata.records import (_LOST, _LOST_SAMPLES, _Other, _attr_index, _id_cpus, _kernel_ref,
                                             _lost, _slots, _task_names, _time_and_cpu, _trailer_names, walk)

#: One spilled sample: word position, time, CPU, attr index (-1: unknown event id), tid (for renames).
REC = np.dtype([("pos", "<i8"), ("time", "<u8"), ("cpu", "<i4"), ("attr", "<i4"), ("tid", "<u4")])
#: Samples sorted at once into one run (a reordered file): bounds the sort's temporaries (~50 MB).
RUN_SAMPLES = 1 << 20
#: Samples held across all runs while merging them.
_MERGE_SAMPLES = 1 << 18
#: Samples read back at once by the passes over the spill.
_READ_SAMPLES = 1 << 18


def _permute(rec: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``rec[order]``, copied as rows of bytes (numpy gathers structured records ~2x slower)."""
    rows = np.take(rec.view(np.uint8).reshape(len(rec), REC.itemsize), order, axis=0)
    return rows.view(REC).reshape(len(order))


def _read(fh: BinaryIO, first: int, count: int) -> np.ndarray:
    """Records [first, first + count) of a spill file (pread: several readers may share the file)."""
    if count <= 0:
        return np.empty(0, REC)
    data = os.pread(fh.fileno(), count * REC.itemsize, first * REC.itemsize)
    return np.frombuffer(data, dtype=REC, count=len(data) // REC.itemsize)


class SampleIndex:
    """Where the samples are (spilled to a temporary file), the gaps and the task names."""

    def __init__(self, spill: BinaryIO, n: int):
        """An index over the ``n`` records of ``spill`` (file order); set up by :func:`index_records`."""
        self._spill = spill
        self.n = n
        self._runs: Optional[BinaryIO] = None  #: the sorted runs of a reordered file
        self._bounds: list[tuple[int, int]] = []
        self.reordered = False
        self.lost_cpu = np.zeros(0, np.int32)
        self.lost_count = np.zeros(0, np.int64)
        self.lost_time = np.zeros(0, np.uint64)
        self.lost_rank = np.zeros(0, np.int64)  #: rank of the next sample
        self.lost_seq = np.zeros(0, np.int64)
        self.cmdlines: dict[int, str] = {}
        self.kernel_ref: Optional[tuple[str, int]] = None  #: (symbol, address) of the recorded kernel mmap

    def close(self) -> None:
        """Delete the temporary files."""
        for fh in (self._spill, self._runs):
            if fh is not None:
                fh.close()

    def file_order(self, step: int) -> Iterator[np.ndarray]:
        """The samples in file order, ``step`` at a time."""
        for lo in range(0, self.n, step):
            yield _read(self._spill, lo, min(step, self.n - lo))

    def _one_run(self, step: int) -> Iterator[np.ndarray]:
        """The samples of a reordered file that is one sorted run, ``step`` at a time (nothing to merge)."""
        for lo in range(0, self.n, step):
            yield _read(self._runs, lo, min(step, self.n - lo))  # type: ignore[arg-type]

    def batches(self, step: int) -> Iterator[np.ndarray]:
        """The samples in stream order (file order, or sorted when reordered), ``step`` at a time."""
        if not self.reordered:
            yield from self.file_order(step)
            return
        if len(self._bounds) == 1:
            yield from self._one_run(step)
            return
        held: list[np.ndarray] = []
        count = 0
        for piece in _merge(self._runs, self._bounds):  # type: ignore[arg-type]
            held.append(piece)
            count += len(piece)
            while count >= step:
                block = np.concatenate(held) if len(held) > 1 else held[0]
                yield block[:step]
                held, count = [block[step:]], count - step
        if count:
            yield np.concatenate(held)

    def gaps(self) -> list[tuple[int, int, int, Optional[int]]]:
        """The lost-event records as (cpu, time, count, time of the CPU's next sample or None).

        For front ends that see the samples but not the records (perf script -s): a gap belongs
        just before that next sample in the CPU's stream.
        """
        m = len(self.lost_cpu)
        after: list[Optional[int]] = [None] * m
        open_ = list(range(m))
        lo = 0
        for rec in (self.batches(_READ_SAMPLES) if m else ()):
            hi = lo + len(rec)
            cpus = rec["cpu"]
            still = []
            for i in open_:
                rank = int(self.lost_rank[i])
                hit = np.flatnonzero(cpus[max(rank - lo, 0):] == int(self.lost_cpu[i])) if rank < hi else ()
                if len(hit):
                    after[i] = int(rec["time"][max(rank - lo, 0) + int(hit[0])])
                else:
                    still.append(i)
            open_, lo = still, hi
            if not open_:
                break
        return [(int(self.lost_cpu[i]), int(self.lost_time[i]), int(self.lost_count[i]), after[i]) for i in range(m)]


def _key_le(rec: np.ndarray, time: int, pos: int) -> int:
    """How many of ``rec`` (sorted by (time, pos)) are <= (time, pos)."""
    t = rec["time"]
    lo = int(np.searchsorted(t, np.uint64(time), side="left"))
    hi = int(np.searchsorted(t, np.uint64(time), side="right"))
    return lo + int(np.searchsorted(rec["pos"][lo:hi], pos, side="right"))


def _merge(fh: BinaryIO, bounds: list[tuple[int, int]]) -> Iterator[np.ndarray]:
    """The records of the sorted runs ``bounds`` of ``fh``, merged into (time, pos) order, a piece at a time.

    Each round every run holds a block; everything up to the smallest last key among the runs with
    more to read is final (no unread record sorts before it), so it is sorted and yielded.
    """
    block = max(4096, _MERGE_SAMPLES // max(1, len(bounds)))
    nxt = [lo for lo, _hi in bounds]
    held = [np.empty(0, REC) for _ in bounds]
    while True:
        for k, (_lo, hi) in enumerate(bounds):
            if not len(held[k]) and nxt[k] < hi:
                held[k] = _read(fh, nxt[k], min(block, hi - nxt[k]))
                nxt[k] += len(held[k])
        if not any(len(h) for h in held):
            return
        limits = [(int(h["time"][-1]), int(h["pos"][-1])) for k, h in enumerate(held) if nxt[k] < bounds[k][1]]
        pieces = []
        for k, h in enumerate(held):
            take = len(h) if not limits else _key_le(h, *min(limits))
            pieces.append(h[:take])
            held[k] = h[take:]
        out = np.concatenate([p for p in pieces if len(p)])
        t = np.ascontiguousarray(out["time"])
        # Runs cover ascending stretches of the file, so a stable sort by time of pieces taken in run
        # order is the (time, pos) order. Runs rarely overlap much: then the pieces are in order already.
        yield out if not (t[1:] < t[:-1]).any() else _permute(out, np.argsort(t, kind="stable"))


class _Order:
    """Whether each CPU's sample times never decrease in file order, checked a window at a time."""

    def __init__(self) -> None:
        self.last: dict[int, int] = {}  #: per CPU, the time of its last sample so far
        self.broken = False

    def add(self, time: np.ndarray, cpu: np.ndarray) -> None:
        if self.broken or not len(time):
            return
        # Stable sort by CPU (radix sort for 16-bit keys) keeps file order within each CPU.
        key = cpu.astype(np.uint16) if cpu.max() < 1 << 16 and cpu.min() >= 0 else cpu
        by_cpu = np.argsort(key, kind="stable")
        t, c = time[by_cpu], cpu[by_cpu]
        if np.any((c[1:] == c[:-1]) & (t[1:] < t[:-1])):
            self.broken = True
            return
        first = np.flatnonzero(np.concatenate(([True], c[1:] != c[:-1])))
        final = np.concatenate((first[1:], [len(c)])) - 1
        for cc, t0, t1 in zip(c[first].tolist(), t[first].tolist(), t[final].tolist()):
            if t0 < self.last.get(cc, 0):
                self.broken = True
                return
            self.last[cc] = t1


def _tid_slot(layouts: dict[int, SampleLayout]) -> Optional[int]:
    """The header word holding the tid, if every event has it at the same place (else no renames)."""
    slots = {lay.tid for lay in layouts.values()}
    return slots.pop() if len(slots) == 1 else None


def _rename_at_samples(idx: SampleIndex, layouts: dict[int, SampleLayout],
                       history: dict[int, list[tuple[int, str]]], cmdlines: dict[int, str]) -> None:
    """A renamed task (exec) is shown by its name at its last sample, as perf script shows it then."""
    renamed = {tid: h for tid, h in history.items() if len(h) > 1}
    if not renamed or not idx.n or _tid_slot(layouts) is None:
        return
    order = sorted(renamed)
    top = max(order)
    if top >= 1 << 24 or min(order) < 0:
        return
    # Renamed tids -> 1..k through a table (pids are small); per task its latest sample time.
    lut = np.zeros(top + 1, dtype=np.int32)
    lut[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    latest = np.full(len(order) + 1, np.iinfo(np.int64).min, dtype=np.int64)
    has_samples = np.zeros(len(order) + 1, dtype=np.int64)
    for rec in idx.file_order(_READ_SAMPLES):
        tids = rec["tid"]
        group = lut[np.minimum(tids, np.uint32(top))]
        group[tids > top] = 0
        rows = np.flatnonzero(group)
        np.maximum.at(latest, group[rows], rec["time"][rows].astype(np.int64))
        has_samples += np.bincount(group[rows], minlength=len(order) + 1)
    for g, tid in enumerate(order, 1):
        if has_samples[g]:  # a task never sampled keeps its final name
            seen = [name for since, name in renamed[tid][1:] if latest[g] >= since]
            cmdlines[tid] = seen[-1] if seen else renamed[tid][0][1]


def _sort_runs(idx: SampleIndex, lost_time: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Write the spill's samples as runs sorted by (time, pos); per gap time ``lost_time``, how many
    samples are earlier, the latest such time (0: none), and the earliest sample time overall."""
    runs = tempfile.TemporaryFile(prefix="zlperf-runs-")
    idx._runs = runs
    rank = np.zeros(len(lost_time), np.int64)
    before = np.zeros(len(lost_time), np.uint64)
    first: Optional[int] = None
    for lo in range(0, idx.n, RUN_SAMPLES):
        rec = _read(idx._spill, lo, min(RUN_SAMPLES, idx.n - lo))
        rec = _permute(rec, np.argsort(np.ascontiguousarray(rec["time"]), kind="stable"))  # ties: file order
        rec.tofile(runs)
        idx._bounds.append((lo, lo + len(rec)))
        t = rec["time"]
        k = np.searchsorted(t, lost_time, side="left")
        rank += k
        before = np.where(k > 0, np.maximum(before, t[np.maximum(k - 1, 0)]), before)
        first = int(t[0]) if first is None else min(first, int(t[0]))
    runs.flush()
    return rank, before, np.uint64(first or 0)


def _place_gaps(idx: SampleIndex, lost_pos: np.ndarray, lost_time: list[Optional[int]],
                rank: np.ndarray, prev: list[Optional[int]], first_time: int) -> None:
    """Each gap goes just before the first sample after it: that sample's rank decides its chunk.
    ``rank``/``prev``: per gap the samples before it in the file and the time of the last of them."""
    known = np.array([x is not None for x in lost_time], dtype=bool)
    stated = np.array([0 if x is None else x for x in lost_time], dtype=np.uint64)
    if not idx.reordered:
        idx.lost_rank = rank
        idx.lost_seq = lost_pos.copy()
        before = np.array([first_time if p is None else p for p in prev], dtype=np.uint64)
    else:
        fallback = np.array([0 if p is None else p for p in prev], dtype=np.uint64)
        lt = np.where(known, stated, fallback).astype(np.uint64)
        idx.lost_rank, before, first = _sort_runs(idx, lt)
        before = np.where(idx.lost_rank > 0, before, first)
        idx.lost_seq = 2 * idx.lost_rank.astype(np.int64) - 1  # samples are 2 * rank
    idx.lost_time = np.where(known, stated, before).astype(np.uint64)


def index_records(words: np.ndarray, raw: np.ndarray, nbytes: int, base: int, path: str, attrs: list[PerfAttr],
                  saved_cmdlines: dict[int, str], warnings: list[str],
                  release: Optional[Callable[[int], None]] = None) -> SampleIndex:
    """Walk the data section once (``words``/``raw``: its u64 and u8 views) and index it
    (``release``: see :func:`.records.walk`)."""
    slots = _slots(attrs)
    layouts = {ai: SampleLayout(a) for ai, a in enumerate(attrs)}
    tid_at = _tid_slot(layouts)
    spill = tempfile.TemporaryFile(prefix="zlperf-samples-")
    idx = SampleIndex(spill, 0)
    try:
        others: list[_Other] = []
        order = _Order()
        unknown = 0
        first_time: Optional[int] = None
        prev_time: Optional[int] = None  # of the last sample so far in file order
        lost_at: dict[int, tuple[int, Optional[int]]] = {}  # gap word -> (samples before, time of the last)
        done = 0  # others already looked at
        for found, cols in walk(words, nbytes, base, warnings, slots, others, release):
            heads = dict(zip(slots, cols))
            n = len(found)
            attr_of = _attr_index(path, heads, attrs, n)
            unknown += int((attr_of < 0).sum())
            time, cpu = _time_and_cpu(words, found, heads, attr_of, layouts)
            order.add(time, cpu)
            for rec in others[done:]:  # this window's gaps: samples before each, and the last one's time
                if rec.type in (_LOST, _LOST_SAMPLES):
                    k = int(np.searchsorted(found, rec.pos // 8))
                    lost_at[rec.pos // 8] = (idx.n + k, int(time[k - 1]) if k else prev_time)
            done = len(others)
            if n:
                out = np.empty(n, REC)
                out["pos"], out["time"], out["cpu"], out["attr"] = found, time, cpu, attr_of
                out["tid"] = (heads[tid_at] >> np.uint64(32)).astype(np.uint32) if tid_at is not None else 0
                out.tofile(spill)
                first_time = int(time[0]) if first_time is None else first_time
                prev_time = int(time[-1])
                idx.n += n
        spill.flush()
        if unknown:
            warnings.append(f"{unknown} samples with an unknown event id were skipped")
        for ai, lay in layouts.items():
            if lay.cpu is None and attrs[ai].type == TYPE_TRACEPOINT:
                warnings.append(f"{attrs[ai].name}: samples have no CPU (record with -a): all shown as cpu 0")
        trailer = _trailer_names(attrs)
        # perf names pid 0 (the idle tasks, interrupted while idle) "swapper" whatever the file says.
        cmdlines = {**saved_cmdlines, 0: "swapper"}
        history = _task_names(raw, others, trailer, cmdlines)
        _rename_at_samples(idx, layouts, history, cmdlines)
        lost_pos, lost_cpu, lost_count, lost_time = _lost(raw, others, trailer, _id_cpus(raw, others), warnings)
        idx.reordered = order.broken
        idx.cmdlines, idx.kernel_ref = cmdlines, _kernel_ref(raw, others)
        idx.lost_cpu = np.array(lost_cpu, dtype=np.int32)
        idx.lost_count = np.array(lost_count, dtype=np.int64)
        places = [lost_at[p] for p in lost_pos]
        _place_gaps(idx, np.array(lost_pos, dtype=np.int64), lost_time,
                    np.array([r for r, _t in places], dtype=np.int64), [t for _r, t in places], first_time or 0)
    except BaseException:
        idx.close()
        raise
    return idx
