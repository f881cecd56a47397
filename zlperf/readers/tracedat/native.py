"""The native ring-buffer page walker (``_pagewalk.c``), loaded with ctypes when it was built.

It is zlperf's one compiled part and optional: ``pip install`` builds it where a C compiler is, and
without it (or with ``ZLPERF_NATIVE=0`` in the environment) the numpy walk in :mod:`.ringbuffer` and the
numpy gathers of :mod:`.fields` do the same work, record for record, several times slower. The walk can
also gather the fields of the event ids it is told of (a :class:`Slot` each) as it meets their records:
a later pass over a run's records would miss the cache once a record.
ctypes rather than the Python C API, so the library works under any python3 that runs zlperf (perf's
embedded interpreter included), whatever version built it.
"""

from __future__ import annotations

__all__ = ["walk_pages", "available", "bad_record", "runs_off", "Walked", "Slot", "Gathered"]

import ctypes
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Tuple

import numpy as np


@dataclass
class Slot:
    """An event id whose records the walk gathers: each record's first ``reach`` payload bytes (its fixed
    fields) and its short ``__data_loc`` strings."""

    event_id: int
    reach: int
    strings: list[tuple[str, int, int]] = field(default_factory=list)  #: (name, location word's offset, rel base)
    #: its records per byte of a run, as last seen: the rows made for it (a quarter more, and 256); a run with
    #: more gives the slot up (its records are gathered in numpy) and sets the estimate for the next one
    per_byte: float = 1 / 16


@dataclass
class Gathered:
    """A slot's records of one run, in ring-buffer order."""

    rec: np.ndarray  #: int64, each record's number among the run's data records (its index in off/ts/...)
    rows: np.ndarray  #: uint8 (n, reach): each record's first payload bytes (0 past the run)
    strings: dict[str, Optional[tuple[np.ndarray, bool]]]  #: name -> (u64 words, all equal), None: a longer one


#: (payload offsets int64, lengths int32, times uint64, records per page int64, [(page, problem)],
#: event ids uint16 or None, the slots' records or None)
Walked = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list, Optional[np.ndarray],
               Optional[list[Optional[Gathered]]]]
_VERSION = 3  #: zl_pagewalk_version() of the C source this module calls

_PROBLEM_BAD_RECORD, _PROBLEM_RUNS_OFF = 1, 2
_walker: Any = None  # the library's zl_walk_pages; None: not looked for yet; False: not available


class _String(ctypes.Structure):
    _fields_ = [("slot", ctypes.c_int64), ("at", ctypes.c_int64), ("base", ctypes.c_int64), ("out", ctypes.c_void_p),
                ("longer", ctypes.c_int64), ("differ", ctypes.c_int64)]


class _Plan(ctypes.Structure):
    _fields_ = [("slot_of", ctypes.c_void_p), ("n_slots", ctypes.c_int64), ("count", ctypes.c_void_p),
                ("rows_cap", ctypes.c_void_p), ("rec", ctypes.c_void_p), ("reach", ctypes.c_void_p), ("rows", ctypes.c_void_p),
                ("n_strings", ctypes.c_int64), ("strings", ctypes.POINTER(_String))]


def bad_record(page_offset: int, rtype: int) -> str:
    """What is wrong with a record header the walk cannot follow."""
    return f"record header at page offset {page_offset} (type {rtype}) is invalid"


def runs_off(page_offset: int) -> str:
    """What is wrong with a page's last event that does not fit its page."""
    return f"event at page offset {page_offset} runs off the page"


def _load() -> Any:
    global _walker
    if _walker is None:
        _walker = False
        if os.environ.get("ZLPERF_NATIVE", "1") != "0" and sys.byteorder == "little":
            import importlib.machinery

            here = Path(__file__).resolve().parent
            # This interpreter's build first; any other will do (no Python ABI in it).
            built = [here / f"_pagewalk{suffix}" for suffix in importlib.machinery.EXTENSION_SUFFIXES]
            for so in built + sorted(here.glob("_pagewalk*.so")):
                if so.is_file():
                    try:
                        lib = ctypes.CDLL(str(so))
                    except OSError:
                        continue
                    version = getattr(lib, "zl_pagewalk_version", None)
                    if version is None:  # a library built from an older source: another argument list
                        continue
                    version.restype = ctypes.c_int64
                    if version() != _VERSION:
                        continue
                    fn = lib.zl_walk_pages
                    p, i64 = ctypes.c_void_p, ctypes.c_int64
                    fn.restype = i64
                    fn.argtypes = [p, i64, i64, i64, ctypes.c_int, i64, p, p, i64, p, p, p, p, p, p, i64, p, i64,
                                   ctypes.POINTER(_Plan)]
                    _walker = fn
                    break
    return _walker


def available() -> bool:
    """Whether the native walker is built and enabled."""
    return bool(_load())


def walk_pages(words: np.ndarray, page_size: int, dstart: int, big: bool, size: np.ndarray,
               ts0: np.ndarray, type_off: int = -1, slots: Optional[list[Slot]] = None,
               data: Optional[np.ndarray] = None) -> Optional[Walked]:
    """The data records of every page of ``words`` (the run as 32-bit words in the file's byte order),
    natively; None when the walker is not available or a bound check failed (the caller walks in numpy).

    ``size`` (int64) is each page's checked data size, ``ts0`` (uint64) its header time. With ``type_off``
    (>= 0), each record's 16-bit event id at that payload offset too (read as ``fields.read_type_ids`` does),
    and with ``slots`` (and ``data``, the run's bytes ``words`` views, maybe with a tail of less than a page),
    the fields of those event ids' records, read from ``data`` as ``fields.gather_fields`` reads them.
    """
    fn = _load()
    n_pages = size.shape[0]
    if not fn or not words.flags.c_contiguous or page_size <= 0 or page_size % 4 or dstart < 0:
        return None
    if slots and (type_off < 0 or data is None or not data.flags.c_contiguous or data.dtype != np.uint8
                  or data.ctypes.data != words.ctypes.data or data.shape[0] < words.shape[0] * 4
                  or len(slots) > 127 or len({s.event_id for s in slots}) != len(slots)
                  or not all(0 <= s.event_id < 1 << 16 for s in slots)):  # ids are the records' u16
        slots = None
    size = np.ascontiguousarray(size, np.int64)
    ts0 = np.ascontiguousarray(ts0, np.uint64)
    run_bytes = data.shape[0] if slots and data is not None else 0
    # Every record takes at least 8 bytes (a data record's header and a word, or an extend), so a page of
    # s data bytes holds at most s // 8 + 1 records: the output is sized by the run, not the file. Real events
    # take 16 bytes or more (header and common fields): try that size first, the bound if it does not do.
    data_bytes = int(np.clip(size, 0, None).sum())
    for per_record in (16, 8):
        cap = data_bytes // per_record + n_pages
        off = np.empty(cap, np.int64)
        length = np.empty(cap, np.uint32)
        ts = np.empty(cap, np.uint64)
        cnt = np.empty(n_pages, np.int64)
        prob = np.empty((max(n_pages, 1), 4), np.int64)
        n_prob = np.zeros(1, np.int64)
        types = np.empty(cap if type_off >= 0 else 0, np.uint16)
        plan = _plan(slots, cap, run_bytes) if slots else None
        n = fn(words.ctypes.data, words.shape[0], page_size, dstart, int(big), n_pages,
               size.ctypes.data, ts0.ctypes.data, cap, off.ctypes.data, length.ctypes.data,
               ts.ctypes.data, cnt.ctypes.data, prob.ctypes.data, n_prob.ctypes.data, type_off,
               types.ctypes.data if type_off >= 0 else None, run_bytes,
               ctypes.byref(plan[0]) if plan else None)
        if n >= 0 or per_record == 8:
            break
    if n < 0:
        return None
    problems = []
    for page, kind, at, rtype in prob[: int(n_prob[0])].tolist():
        problems.append((page, bad_record(at, rtype) if kind == _PROBLEM_BAD_RECORD else runs_off(at)))
    gathered = _gathered(slots, plan) if slots and plan else None
    # Views of the capacity: the decoder gathers its columns from them and lets the run go.
    return (off[:n], length[:n].view(np.int32), ts[:n], cnt, problems, types[:n] if type_off >= 0 else None,
            gathered)


def _plan(slots: list[Slot], cap: int, run_bytes: int) -> tuple:
    """The C plan for ``slots`` (a run of ``run_bytes`` of at most ``cap`` records), and the arrays it points
    into (kept alive). Each slot's outputs are sized by its estimate, not by ``cap``: a slot with room for all
    the run's records would hold several times the memory its records take."""
    slot_of = np.full(1 << 16, -1, np.int8)
    count = np.zeros(len(slots), np.int64)
    # Bounded by the run too: a format (from the file) may claim fixed parts wider than its records, and the
    # rows of a slot never take more than twice the run's bytes (a full slot is given up, not grown).
    rows_cap = np.array([min(cap, int(slot.per_byte * run_bytes * 1.25) + 256, 2 * run_bytes // max(slot.reach, 1))
                         for slot in slots], np.int64)
    recs = [np.empty(n, np.int64) for n in rows_cap.tolist()]
    rows = [np.empty((n, max(slot.reach, 1)), np.uint8) for n, slot in zip(rows_cap.tolist(), slots)]
    reach = np.array([r.shape[1] for r in rows], np.int64)
    strings: list[tuple[int, int, int, np.ndarray]] = []  # (slot, at, base, words)
    for s, slot in enumerate(slots):
        slot_of[slot.event_id] = s
        strings.extend((s, at, base, np.empty(int(rows_cap[s]), np.uint64)) for _name, at, base in slot.strings)
    table = (_String * max(len(strings), 1))()
    for k, (s, at, base, out) in enumerate(strings):
        table[k] = _String(s, at, base, out.ctypes.data, 0, 0)
    pointers = [np.array([a.ctypes.data for a in arrays], np.uintp) for arrays in (recs, rows)]
    plan = _Plan(slot_of.ctypes.data, len(slots), count.ctypes.data, rows_cap.ctypes.data, pointers[0].ctypes.data,
                 reach.ctypes.data, pointers[1].ctypes.data, len(strings), table)
    return plan, (slot_of, count, recs, rows, reach, strings, table, pointers, rows_cap)


def _gathered(slots: list[Slot], plan: tuple) -> list[Optional[Gathered]]:
    """Each slot's rows out of a followed plan (views of the outputs: the caller keeps what it needs); None
    for a slot given up (more records than its rows)."""
    _slot_of, count, recs, rows, _reach, strings, table, _pointers, _rows_cap = plan[1]
    out: list[Optional[Gathered]] = []
    k = 0
    for s, slot in enumerate(slots):
        n = int(count[s])
        words: dict[str, Optional[tuple[np.ndarray, bool]]] = {}
        for name, *_spec in slot.strings:
            c = table[k]
            words[name] = None if c.longer else (strings[k][3][:n], not c.differ)
            k += 1
        out.append(Gathered(recs[s][:n], rows[s][:n], words) if n >= 0 else None)
    return out
