"""The record walk of a perf.data data section: where the samples are, and what the other records say.

Records as include/uapi/linux/perf_event.h and perf's user types (tools/perf/util/event.h) define
them: task names (COMM, FORK), lost events (LOST, LOST_SAMPLES), the kernel mmap, ID_INDEX. Each
concern is one function over the walk's result; :func:`.index.index_records` runs them in order.

Ordering. perf.data is not globally time-sorted: ``perf record -a`` drains one ring buffer per CPU
round after round, so the records of one CPU appear in the file in the order that CPU's buffer
received them, and FINISHED_ROUND only bounds reordering *between* buffers. The walk checks this
on every file (per-CPU sample times never decrease in file order); then ``seq`` is the record's
byte position. If a file breaks it (``--per-thread`` buffers, files rewritten by tools), samples are
sorted by (time, file position), as perf script's ordered-events queue does, and ``seq`` is the rank.
"""

from __future__ import annotations

__all__ = ["Compressed", "walk", "COMPRESSED_TYPES"]

import struct
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import numpy as np

from zlperf.errors import TraceFormatError
from zlperf.readers.perfdata.layout import PerfAttr, SampleLayout

# perf_event_header.type values used here (uapi perf_event.h and perf's user types >= 64).
_MMAP, _LOST, _COMM, _FORK, _SAMPLE, _LOST_SAMPLES = 1, 2, 3, 7, 9, 13
_ID_INDEX, _COMPRESSED, _COMPRESSED2 = 69, 81, 83
#: The non-sample records later steps read (the walk keeps no others: FINISHED_ROUND is one per round).
_KEPT = frozenset((_MMAP, _LOST, _COMM, _FORK, _LOST_SAMPLES, _ID_INDEX))
#: PERF_RECORD_COMPRESSED (perf record -z) and its successor with an explicit data size.
COMPRESSED_TYPES = (_COMPRESSED, _COMPRESSED2)

#: Words examined per window of the record walk (bounds its temporaries to ~25 MB).
_WALK_WINDOW = 1 << 20


class Compressed(Exception):
    """The data section holds PERF_RECORD_COMPRESSED records (perf record -z)."""


@dataclass
class _Other:
    pos: int  #: byte offset in the data section
    type: int
    size: int


def walk(words: np.ndarray, nbytes: int, base: int, warnings: list[str], slots: list[int], others: list[_Other],
         release: Optional[Callable[[int], None]] = None) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
    """Per window of the data section: the word index of each sample record found there (int64) and,
    per header word ``slots[i]``, that word of every such sample; the other records it steps over
    (those later steps read) are appended to ``others`` before the window is yielded.

    Records are variable length, so a plain walk is one Python step per record. Instead, every
    8-byte word that *could* start a sample (type 9, sane size) is a candidate; a run of
    candidates each ending exactly where the next starts is a run of real records, taken whole.
    The Python loop only steps over the other records (COMM, FORK, FINISHED_ROUND, ...) and over
    false candidates inside payloads, which the walk skips because it never lands on them.
    Windows are yielded in file order; after each, ``release(n)`` is told the first ``n`` bytes are
    done with. Raises :class:`Compressed` at the first compressed record.
    """
    nwords = nbytes // 8
    last_word = nwords - 1
    offsets = np.array(slots, dtype=np.int64)
    pos = 0  # word index, always a real record start
    damaged = False
    last_other: Optional[_Other] = None
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
            last_other = _Other(8 * p, rtype, rsize)
            if rtype in _KEPT:  # FINISHED_ROUND and the like: nothing later reads them
                others.append(last_other)
            p += rsize >> 3
        # This window's samples and their header words, gathered while its pages are in.
        found = np.concatenate(runs).astype(np.int64, copy=False) if runs else np.empty(0, np.int64)
        grid = words[np.minimum(found[:, None] + offsets, last_word)] if len(offsets) and len(found) \
            else np.zeros((len(found), len(offsets)), np.uint64)
        pos = p
        yield found, [grid[:, i] for i in range(len(offsets))]
        if release is not None:
            release(8 * min(p, nwords))
    # (A sample's header word is always inside the section: candidates are words of it.)
    if pos > nwords and not damaged:
        warnings.append("the last record of the data section is cut off (file truncated)")
        if last_other is not None and last_other.pos + last_other.size > nbytes and others \
                and others[-1] is last_other:
            others.pop()


def _slots(attrs: list[PerfAttr]) -> list[int]:
    """The header words every later step reads (id, tid, time, cpu) of a sample of any attr."""
    return sorted({j for a in attrs for lay in (SampleLayout(a),)
                   for j in (lay.identifier, lay.id, lay.tid, lay.time, lay.cpu) if j is not None})


def _attr_index(path: str, heads: dict[int, np.ndarray], attrs: list[PerfAttr], n: int) -> np.ndarray:
    """Which attr (event) each sample belongs to, from its IDENTIFIER or ID word (-1: unknown id)."""
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
