"""The record walk of a perf.data data section: where the samples are, and what the other records say.

Records as include/uapi/linux/perf_event.h and perf's user types (tools/perf/util/event.h) define
them: task names (COMM, FORK), lost events (LOST, LOST_SAMPLES), the kernel mmap, ID_INDEX. Each
concern is one function over the walk's result; :func:`index_records` runs them in order.

Ordering. perf.data is not globally time-sorted: ``perf record -a`` drains one ring buffer per CPU
round after round, so the records of one CPU appear in the file in the order that CPU's buffer
received them, and FINISHED_ROUND only bounds reordering *between* buffers. The walk checks this
on every file (per-CPU sample times never decrease in file order); then ``seq`` is the record's
byte position. If a file breaks it (``--per-thread`` buffers, files rewritten by tools), samples are
sorted by (time, file position), as perf script's ordered-events queue does, and ``seq`` is the rank.
"""

from __future__ import annotations

__all__ = ["RecordIndex", "Compressed", "index_records", "walk", "COMPRESSED_TYPES"]

import struct
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from zlperf.errors import TraceFormatError
from zlperf.readers.perfdata.layout import TYPE_TRACEPOINT, PerfAttr, SampleLayout

# perf_event_header.type values used here (uapi perf_event.h and perf's user types >= 64).
_MMAP, _LOST, _COMM, _FORK, _SAMPLE, _LOST_SAMPLES = 1, 2, 3, 7, 9, 13
_ID_INDEX, _COMPRESSED, _COMPRESSED2 = 69, 81, 83
#: PERF_RECORD_COMPRESSED (perf record -z) and its successor with an explicit data size.
COMPRESSED_TYPES = (_COMPRESSED, _COMPRESSED2)

#: Words examined per window of the record walk (bounds its temporaries to ~100 MB).
_WALK_WINDOW = 1 << 22


class Compressed(Exception):
    """The data section holds PERF_RECORD_COMPRESSED records (perf record -z)."""


@dataclass
class _Other:
    pos: int  #: byte offset in the data section
    type: int
    size: int


@dataclass
class _Walk:
    """What :func:`walk` found."""

    pos: np.ndarray  #: int64 word index of each sample record
    heads: dict[int, np.ndarray]  #: word j of every sample (the header slots asked for)
    others: list[_Other]


def walk(words: np.ndarray, nbytes: int, base: int, warnings: list[str], slots: list[int],
         release: Optional[Callable[[int], None]] = None) -> _Walk:
    """Record starts in the data section, the header words ``slots`` of every sample, the other records.

    Records are variable length, so a plain walk is one Python step per record. Instead, every
    8-byte word that *could* start a sample (type 9, sane size) is a candidate; a run of
    candidates each ending exactly where the next starts is a run of real records, taken whole.
    The Python loop only steps over the other records (COMM, FORK, FINISHED_ROUND, ...) and over
    false candidates inside payloads, which the walk skips because it never lands on them.
    The section is read a window at a time; after each, ``release(n)`` is told the first ``n``
    bytes are done with. Raises :class:`Compressed` at the first compressed record.
    """
    nwords = nbytes // 8
    last_word = nwords - 1
    samples: list[np.ndarray] = []
    parts: dict[int, list[np.ndarray]] = {j: [] for j in slots}
    others: list[_Other] = []
    offsets = np.array(slots, dtype=np.int64)
    pos = 0  # word index, always a real record start
    damaged = False
    while pos < nwords and not damaged:
        wend = min(pos + _WALK_WINDOW, nwords)
        w = words[pos:wend]
        # The low half of each little-endian word is a record type if a record starts there.
        cand = np.flatnonzero(w.view(np.uint32)[::2] == _SAMPLE)
        size = (w[cand] >> np.uint64(48)).astype(np.int64)
        ok = (size >= 16) & ((size & 7) == 0)
        cand, size = cand[ok] + pos, size[ok]
        nxt = cand + (size >> 3)
        breaks = np.flatnonzero(nxt[:-1] != cand[1:])
        ncand = len(cand)
        runs: list[np.ndarray] = []
        p = pos
        while p < wend:
            k = int(np.searchsorted(cand, p))
            if k < ncand and cand[k] == p:
                bi = int(np.searchsorted(breaks, k))
                last = int(breaks[bi]) if bi < len(breaks) else ncand - 1
                runs.append(cand[k:last + 1])
                p = int(nxt[last])
                continue
            hw = int(words[p])
            rtype, rsize = hw & 0xFFFFFFFF, hw >> 48
            if rtype in COMPRESSED_TYPES:
                raise Compressed()
            if rsize < 8 or rsize % 8:
                warnings.append(f"data section damaged at offset {base + 8 * p:#x} (record type {rtype}, size "
                                f"{rsize}): the rest of the file was not read")
                damaged = True
                break
            others.append(_Other(8 * p, rtype, rsize))
            p += rsize >> 3
        if runs:  # this window's samples and their header words, gathered while its pages are in
            found = np.concatenate(runs)
            samples.append(found)
            if len(offsets):
                grid = words[np.minimum(found[:, None] + offsets, last_word)]
                for i, j in enumerate(slots):
                    parts[j].append(grid[:, i])
        if release is not None:
            release(8 * min(p, nwords))
        pos = p
    out = _Walk(np.concatenate(samples).astype(np.int64, copy=False) if samples else np.empty(0, np.int64),
                {j: np.concatenate(v) if v else np.empty(0, np.uint64) for j, v in parts.items()}, others)
    if pos > nwords and not damaged:
        warnings.append("the last record of the data section is cut off (file truncated)")
        if len(out.pos) and out.pos[-1] * 8 + 8 > nbytes:
            out.pos = out.pos[:-1]
            out.heads = {j: v[:-1] for j, v in out.heads.items()}
        if others and others[-1].pos + others[-1].size > nbytes:
            others.pop()
    return out


@dataclass
class RecordIndex:
    """What the walk found: per sample its position, event, time and CPU; the gaps; task names."""

    sample_words: np.ndarray  #: int64 word index of each sample record, in file order
    attr_of: np.ndarray  #: int32 index into the attrs (-1: unknown event id)
    time: np.ndarray  #: uint64
    cpu: np.ndarray  #: int32
    order: Optional[np.ndarray] = None  #: None: file order is per-CPU time order; else the sorted order
    lost_cpu: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    lost_count: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    lost_time: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64))
    lost_rank: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  #: rank of the next sample
    lost_seq: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    cmdlines: dict[int, str] = field(default_factory=dict)
    kernel_ref: Optional[tuple[str, int]] = None  #: (symbol, address) of the recorded kernel mmap

    def gaps(self) -> list[tuple[int, int, int, Optional[int]]]:
        """The lost-event records as (cpu, time, count, time of the CPU's next sample or None).

        For front ends that see the samples but not the records (perf script -s): a gap belongs
        just before that next sample in the CPU's stream.
        """
        out = []
        stream = np.arange(len(self.sample_words)) if self.order is None else self.order
        cpus = self.cpu[stream]
        for i in range(len(self.lost_cpu)):
            cpu = int(self.lost_cpu[i])
            after = np.flatnonzero(cpus[int(self.lost_rank[i]):] == cpu)
            nxt = int(self.time[stream[int(self.lost_rank[i]) + int(after[0])]]) if len(after) else None
            out.append((cpu, int(self.lost_time[i]), int(self.lost_count[i]), nxt))
        return out


def _slots(attrs: list[PerfAttr]) -> list[int]:
    """The header words every later step reads (id, tid, time, cpu) of a sample of any attr."""
    return sorted({j for a in attrs for lay in (SampleLayout(a),)
                   for j in (lay.identifier, lay.id, lay.tid, lay.time, lay.cpu) if j is not None})


def _attr_index(path: str, heads: dict[int, np.ndarray], attrs: list[PerfAttr], n: int,
                warnings: list[str]) -> np.ndarray:
    """Which attr (event) each sample belongs to, from its IDENTIFIER or ID word."""
    if len(attrs) <= 1 or n == 0:
        return np.zeros(n, np.int32)
    lay = SampleLayout(attrs[0])
    same_type = len({a.sample_type for a in attrs}) == 1
    if lay.identifier is not None:
        ids = heads[lay.identifier]
    elif same_type and lay.id is not None:
        ids = heads[lay.id]
    else:
        raise TraceFormatError(path, None, "samples of several events carry no event id (PERF_SAMPLE_IDENTIFIER)",
                               "re-record with a current perf")
    table_ids = np.array([i for a in attrs for i in a.ids], dtype=np.uint64)
    table_attr = np.array([a.index for a in attrs for _ in a.ids], dtype=np.int32)
    if not len(table_ids):
        out = np.full(n, -1, np.int32)
    elif int(table_ids.max()) < 1 << 20:
        # perf's ids are small numbers: a lookup table is one gather.
        lut = np.full(int(table_ids.max()) + 2, -1, dtype=np.int32)
        lut[table_ids.astype(np.int64)] = table_attr
        out = lut[np.minimum(ids, np.uint64(len(lut) - 1)).astype(np.int64)]
    else:
        order = np.argsort(table_ids)
        table_ids, table_attr = table_ids[order], table_attr[order]
        k = np.clip(np.searchsorted(table_ids, ids), 0, len(table_ids) - 1)
        out = np.where(table_ids[k] == ids, table_attr[k], -1).astype(np.int32)
    unknown = int((out < 0).sum())
    if unknown:
        warnings.append(f"{unknown} samples with an unknown event id were skipped")
    return out


def _trailer_names(attrs: list[PerfAttr]) -> list[str]:
    """The sample_id fields at the end of non-sample records (``sample_id_all``), in order."""
    if not attrs or not attrs[0].sample_id_all:
        return []
    st = attrs[0].sample_type
    return [name for bit, name in ((1 << 1, "tid"), (1 << 2, "time"), (1 << 6, "id"), (1 << 9, "stream"),
                                   (1 << 7, "cpu"), (1 << 16, "ident")) if st & bit]


def _trailer(raw: np.ndarray, rec: _Other, names: list[str]) -> tuple[Optional[int], Optional[int]]:
    """(cpu, time) from a non-sample record's sample_id trailer."""
    if not names or rec.size < 8 + 8 * len(names):
        return None, None
    vals = struct.unpack_from(f"<{len(names)}Q", raw, rec.pos + rec.size - 8 * len(names))
    d = dict(zip(names, vals))
    return (d["cpu"] & 0xFFFFFFFF if "cpu" in d else None), d.get("time")


def _task_names(raw: np.ndarray, others: list[_Other], trailer: list[str], cmdlines: dict[int, str]
                ) -> dict[int, list[tuple[int, str]]]:
    """COMM sets a thread's name, FORK copies the parent's; applied in time order (their trailer
    time), since buffers of different CPUs interleave in the file. Returns each tid's renames."""
    tasks = [(_trailer(raw, r, trailer)[1] or 0, r) for r in others
             if (r.type == _COMM and r.size >= 17) or (r.type == _FORK and r.size >= 24)]
    tasks.sort(key=lambda tr: tr[0])
    history: dict[int, list[tuple[int, str]]] = {}
    for when, rec in tasks:
        if rec.type == _COMM:
            _pid, tid = struct.unpack_from("<ii", raw, rec.pos + 8)
            comm = bytes(raw[rec.pos + 16:rec.pos + rec.size]).split(b"\0", 1)[0].decode("utf-8", "replace")
        else:
            _pid, _ppid, tid, ptid = struct.unpack_from("<iiii", raw, rec.pos + 8)
            if ptid not in cmdlines:
                continue
            comm = cmdlines[ptid]
        if cmdlines.get(tid) != comm:
            cmdlines[tid] = comm
            history.setdefault(tid, []).append((when, comm))
    return history


def _id_cpus(raw: np.ndarray, others: list[_Other]) -> dict[int, int]:
    """Event id -> CPU from PERF_RECORD_ID_INDEX entries (u64 id, idx, cpu, tid each)."""
    out: dict[int, int] = {}
    for rec in others:
        if rec.type == _ID_INDEX and rec.size >= 16:
            nr, = struct.unpack_from("<Q", raw, rec.pos + 8)
            for j in range(min(nr, (rec.size - 16) // 32)):
                eid, _idx, ecpu, _tid = struct.unpack_from("<QQQQ", raw, rec.pos + 16 + 32 * j)
                out[eid] = ecpu if ecpu < 2**31 else -1
    return out


def _kernel_ref(raw: np.ndarray, others: list[_Other]) -> Optional[tuple[str, int]]:
    """PERF_RECORD_MMAP of the kernel: pid -1, file "[kernel.kallsyms]SYMBOL", pgoff = SYMBOL's address."""
    prefix = "[kernel.kallsyms]"
    for rec in others:
        if rec.type == _MMAP and rec.size > 40:
            pid, = struct.unpack_from("<i", raw, rec.pos + 8)
            name = bytes(raw[rec.pos + 40:rec.pos + rec.size]).split(b"\0", 1)[0].decode("utf-8", "replace")
            if pid == -1 and name.startswith(prefix) and len(name) > len(prefix):
                return name[len(prefix):], struct.unpack_from("<Q", raw, rec.pos + 32)[0]
    return None


def _lost(raw: np.ndarray, others: list[_Other], trailer: list[str], id_cpu: dict[int, int],
          warnings: list[str]) -> tuple[list[int], list[int], list[int], list[Optional[int]]]:
    """(word position, cpu, count, time or None) of each LOST / LOST_SAMPLES record."""
    pos, cpus, counts, times = [], [], [], []
    for rec in others:
        if rec.type not in (_LOST, _LOST_SAMPLES) or rec.size < (24 if rec.type == _LOST else 16):
            continue
        if rec.type == _LOST:
            eid, count = struct.unpack_from("<QQ", raw, rec.pos + 8)
        else:
            eid, count = None, struct.unpack_from("<Q", raw, rec.pos + 8)[0]
        cpu, ts = _trailer(raw, rec, trailer)
        if cpu is None and eid is not None:
            cpu = id_cpu.get(eid)
        pos.append(rec.pos // 8)
        cpus.append(-1 if cpu is None or cpu >= 2**31 else cpu)
        counts.append(min(count, 2**63 - 1))
        times.append(ts)
    if any(c < 0 for c in cpus):
        warnings.append("lost-event records without a CPU: counted in the total only")
    return pos, cpus, counts, times


def _time_and_cpu(words: np.ndarray, pos: np.ndarray, heads: dict[int, np.ndarray], attr_of: np.ndarray,
                  layouts: dict[int, SampleLayout]) -> tuple[np.ndarray, np.ndarray]:
    """Per sample time (uint64) and CPU (int32) from its header words."""
    n = len(pos)
    slots = {(lay.time, lay.cpu) for lay in layouts.values()}
    if len(slots) == 1:  # the usual case: one gather each for all samples
        t_at, c_at = slots.pop()
        time = np.ascontiguousarray(heads[t_at]) if t_at is not None and n else np.zeros(n, np.uint64)
        cpu = (heads[c_at] & np.uint64(0xFFFFFFFF)).astype(np.int32) if c_at is not None and n \
            else np.zeros(n, np.int32)
        return time, cpu
    time = np.zeros(n, np.uint64)
    cpu = np.zeros(n, np.int32)
    for ai, lay in layouts.items():
        rows = np.flatnonzero(attr_of == ai)
        if len(rows) and lay.time is not None:
            time[rows] = words[pos[rows] + lay.time]
        if len(rows) and lay.cpu is not None:
            cpu[rows] = words.view(np.uint32)[2 * (pos[rows] + lay.cpu)].astype(np.int32)
    return time, cpu


def _rename_at_samples(heads: dict[int, np.ndarray], time: np.ndarray, layouts: dict[int, SampleLayout],
                       history: dict[int, list[tuple[int, str]]], cmdlines: dict[int, str]) -> None:
    """A renamed task (exec) is shown by its name at its last sample, as perf script shows it then."""
    renamed = {tid: h for tid, h in history.items() if len(h) > 1}
    tid_slots = {lay.tid for lay in layouts.values()}
    if not renamed or not len(time) or len(tid_slots) != 1 or None in tid_slots:
        return
    tids = (heads[tid_slots.pop()] >> np.uint64(32)).astype(np.uint32)
    # Renamed tids -> 1..k through a table (pids are small), then per rename level one
    # vectorised pass: does the task have a sample at or after that rename?
    order = sorted(renamed)
    top = max(order)
    if top >= 1 << 24 or min(order) < 0:
        return
    lut = np.zeros(top + 1, dtype=np.int32)
    lut[order] = np.arange(1, len(order) + 1, dtype=np.int32)
    group = lut[np.minimum(tids, np.uint32(top))]
    group[tids > top] = 0
    rows = np.flatnonzero(group)
    group, when_sampled = group[rows], time[rows]
    names = {tid: renamed[tid][0][1] for tid in order}
    for level in range(1, max(len(h) for h in renamed.values())):
        since = np.full(len(order) + 1, np.iinfo(np.int64).max, dtype=np.int64)
        for g, tid in enumerate(order, 1):
            if level < len(renamed[tid]):
                since[g] = renamed[tid][level][0]
        seen = np.bincount(group, weights=(when_sampled.astype(np.int64) >= since[group]),
                           minlength=len(order) + 1)
        for g, tid in enumerate(order, 1):
            if seen[g] > 0:
                names[tid] = renamed[tid][level][1]
    has_samples = np.bincount(group, minlength=len(order) + 1)
    for g, tid in enumerate(order, 1):
        if has_samples[g]:  # a task never sampled keeps its final name
            cmdlines[tid] = names[tid]


def _sample_order(pos: np.ndarray, time: np.ndarray, cpu: np.ndarray) -> Optional[np.ndarray]:
    """None when each CPU's samples are time-ordered in the file (module docstring), else the order
    by (time, file position)."""
    if not len(pos):
        return None
    # Stable sort by CPU (radix sort for 16-bit keys) keeps file order within each CPU.
    key = cpu.astype(np.uint16) if cpu.max() < 1 << 16 and cpu.min() >= 0 else cpu
    by_cpu = np.argsort(key, kind="stable")
    t, c = time[by_cpu], cpu[by_cpu]
    if np.any((c[1:] == c[:-1]) & (t[1:] < t[:-1])):
        return np.lexsort((pos, time))
    return None


def _place_gaps(idx: RecordIndex, lost_pos: np.ndarray, lost_time: list[Optional[int]]) -> None:
    """Each gap goes just before the first sample after it: that sample's rank decides its chunk."""
    pos, time, order = idx.sample_words, idx.time, idx.order
    n = len(pos)
    if order is None:
        idx.lost_rank = np.searchsorted(pos, lost_pos)
        idx.lost_seq = lost_pos.copy()
    else:
        prev_file = np.searchsorted(pos, lost_pos) - 1
        fallback = np.where(prev_file >= 0, time[np.maximum(prev_file, 0)], 0) if n else \
            np.zeros(len(lost_pos), np.uint64)
        lt = np.array([(fallback[i] if x is None else x) for i, x in enumerate(lost_time)], dtype=np.uint64)
        idx.lost_rank = np.searchsorted(time[order], lt, side="left")
        idx.lost_seq = 2 * idx.lost_rank.astype(np.int64) - 1  # samples are 2 * rank
    prev = np.maximum(idx.lost_rank - 1, 0)
    known = np.array([x is not None for x in lost_time], dtype=bool)
    stated = np.array([0 if x is None else x for x in lost_time], dtype=np.uint64)
    if n:
        before = time[order[prev]] if order is not None else time[prev]
    else:
        before = np.zeros(len(prev), np.uint64)
    idx.lost_time = np.where(known, stated, before).astype(np.uint64)


def index_records(words: np.ndarray, raw: np.ndarray, nbytes: int, base: int, path: str, attrs: list[PerfAttr],
                  saved_cmdlines: dict[int, str], warnings: list[str],
                  release: Optional[Callable[[int], None]] = None) -> RecordIndex:
    """Walk the data section once (``words``/``raw``: its u64 and u8 views) and index it
    (``release``: see :func:`walk`)."""
    found = walk(words, nbytes, base, warnings, _slots(attrs), release)
    pos, heads, others = found.pos, found.heads, found.others
    attr_of = _attr_index(path, heads, attrs, len(pos), warnings)
    layouts = {ai: SampleLayout(a) for ai, a in enumerate(attrs)}
    time, cpu = _time_and_cpu(words, pos, heads, attr_of, layouts)
    for ai, lay in layouts.items():
        if lay.cpu is None and attrs[ai].type == TYPE_TRACEPOINT:
            warnings.append(f"{attrs[ai].name}: samples have no CPU (record with -a): all shown as cpu 0")
    trailer = _trailer_names(attrs)
    cmdlines = dict(saved_cmdlines)
    history = _task_names(raw, others, trailer, cmdlines)
    _rename_at_samples(heads, time, layouts, history, cmdlines)
    lost_pos, lost_cpu, lost_count, lost_time = _lost(raw, others, trailer, _id_cpus(raw, others), warnings)
    idx = RecordIndex(pos, attr_of, time, cpu, _sample_order(pos, time, cpu),
                      lost_cpu=np.array(lost_cpu, dtype=np.int32), lost_count=np.array(lost_count, dtype=np.int64),
                      cmdlines=cmdlines, kernel_ref=_kernel_ref(raw, others))
    _place_gaps(idx, np.array(lost_pos, dtype=np.int64), lost_time)
    return idx
