"""The zone-lock tracepoint patch's events: kmem:mm_zone_lock_contended / mm_zone_locked / mm_zone_lock_unlock.

The patch ("mm/page_alloc: add tracepoints for zone->lock acquisitions", J. D. Brouer, 2026) wraps
the three page-allocator fast paths that take zone->lock (free_pcppages_bulk, rmqueue_bulk,
free_one_page) in __zone_lock()/__zone_unlock() helpers. Zone identity is (node_id, name). The
locked event carries ``contended`` and ``wait_ns`` (0 when uncontended: the spin is measured with
local_clock() only after a failed trylock). Holds pair each unlock with the locked event just
before it on the same CPU (see zlperf.analysis.pairing). Holds and waits are attributed to the
*locked* caller: ``caller`` is _RET_IP_ inside an inline helper, and the compiler may keep the
lock helper out of line but inline the unlock one, so the unlock's caller is one level further up
(seen on 6.12: locked ``__rmqueue_pcplist+0x21f``, unlock ``get_page_from_freelist+0x42f``).
"""

from __future__ import annotations

__all__ = ["KmemZoneLockABI", "CONTENDED", "LOCKED", "UNLOCK", "EVENTS"]

import re
from typing import ClassVar, Mapping, Optional

import numpy as np

from zlperf.analysis.model import Capabilities, Observations, Table, Zone, ZoneTable
from zlperf.analysis.options import AnalysisOptions
from zlperf.analysis.pairing import CLOSE, GAP, OPEN, PairResult, PerCpuPairer
from zlperf.analysis.stacks import stacks_of
from zlperf.events import MISSED_EVENTS, Chunk, EventBatch, TraceInfo

CONTENDED = "kmem:mm_zone_lock_contended"
LOCKED = "kmem:mm_zone_locked"
UNLOCK = "kmem:mm_zone_lock_unlock"
EVENTS = (CONTENDED, LOCKED, UNLOCK)

_NOT_COVERED = (
    "zone->lock taken outside the three traced fast paths (compaction, page isolation, "
    "memory hotplug, vmstat) is not seen by these tracepoints"
)


#: node_id is zone_to_nid(): below MAX_NUMNODES, which is 1 << CONFIG_NODES_SHIFT (at most 10 in
#: the kernel's Kconfig). Larger or negative values come from damaged records.
MAX_NODES = 1 << 10
#: zone->name is one of the kernel's zone names (mm/page_alloc.c zone_names[]: DMA, DMA32, Normal,
#: HighMem, Movable, Device); anything else in the string field is damage.
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,15}")


def zone_codes(batch: EventBatch, zones: ZoneTable) -> np.ndarray:
    """Zone code per row from the (node_id, name) fields; -1 where they cannot be a real zone.

    Keys are encoded by their distinct values, so memory follows the rows, never a value read
    from the file: (name, node) becomes one small integer and distinct zones come from a
    bincount when that is small, a sort otherwise.
    """
    node = batch.fields["node_id"]
    n = len(node)
    if n == 0:
        return np.empty(0, dtype=np.int32)
    name_codes, names = batch.categorical("name")
    # Every node id plausible (the usual chunk): two reductions instead of a mask and a pass of np.where.
    plausible = None if 0 <= int(node.min()) and int(node.max()) < MAX_NODES else (node >= 0) & (node < MAX_NODES)
    node = node.astype(np.int64) if plausible is None else np.where(plausible, node, 0).astype(np.int64)
    key = name_codes.astype(np.int64) * MAX_NODES + node
    if len(names) * MAX_NODES <= 4 * n + (1 << 16):
        present = np.flatnonzero(np.bincount(key, minlength=1))
        inverse = None
    else:  # many distinct strings (damage): a sort bounded by the rows
        present, inverse = np.unique(key, return_inverse=True)
    table = np.full(len(present), -1, dtype=np.int32)
    for i, k in enumerate(present.tolist()):
        name = names[k // MAX_NODES]
        if isinstance(name, str) and _ZONE_NAME.fullmatch(name):
            table[i] = zones.code(Zone(node=k % MAX_NODES, name=name))
    if inverse is None:
        lookup = np.full(int(present[-1]) + 1, -1, dtype=np.int32)
        lookup[present] = table
        codes = lookup[key]
    else:
        codes = table[inverse.ravel()]
    if plausible is not None:
        codes[~plausible] = -1
    return codes


def _base(batch: EventBatch, zone: np.ndarray) -> Table:
    return {
        "ts": batch.ts.astype(np.uint64, copy=False),
        "cpu": batch.cpu.astype(np.int32, copy=False),
        "pid": batch.pid.astype(np.int32, copy=False),
        "zone": zone,
        "caller": batch.fields["caller"].astype(np.uint64, copy=False),
    }


_BASE = ("ts", "cpu", "pid", "zone", "caller")
_SEQ = (*_BASE, "seq")  # rows that are (or pair with) an acquisition carry its stream position


def _rows(table: Table, idx: np.ndarray, columns: tuple[str, ...] = _BASE) -> Table:
    return {c: table[c][idx] for c in columns}


def _stream(kind: int, t: Optional[Table]) -> Table:
    """Rows for the pairer: ``kind`` (OPEN/CLOSE/GAP), ``key`` = zone, base columns, seq, count, and
    whether an acquisition was contended (releases and gaps: False)."""
    if t is None:
        return {"kind": np.empty(0, np.int8), "seq": np.empty(0, np.int64), "key": np.empty(0, np.int32),
                "ts": np.empty(0, np.uint64), "cpu": np.empty(0, np.int32), "pid": np.empty(0, np.int32),
                "zone": np.empty(0, np.int32), "caller": np.empty(0, np.uint64), "count": np.empty(0, np.int32),
                "contended": np.empty(0, np.bool_)}
    n = len(t["ts"])
    return {"kind": np.full(n, kind, np.int8), "seq": t["seq"], "key": t["zone"],
            **{c: t[c] for c in _BASE}, "count": np.asarray(t["count"]).astype(np.int32, copy=False),
            "contended": t["contended"] if "contended" in t else np.zeros(n, np.bool_)}


def releases(t: Table, res: PairResult) -> Table:
    """Every close of a pairing as a release with its holder (zlperf.analysis.holders.RELEASE_COLUMNS):
    paired closes carry their acquisition's caller, seq, hold time, count and contended flag; unmatched
    closes and closes after a gap have none."""
    others = np.concatenate([res.unmatched_close, res.broken_close])
    closes = np.concatenate([res.close_idx, others])
    m = len(others)
    return {
        "ts": t["ts"][closes], "cpu": t["cpu"][closes], "pid": t["pid"][closes], "zone": t["zone"][closes],
        "seq": t["seq"][closes],
        "holder_caller": np.concatenate([t["caller"][res.open_idx], np.zeros(m, np.uint64)]),
        "holder_seq": np.concatenate([t["seq"][res.open_idx], np.full(m, -1, np.int64)]),
        "hold_ns": np.concatenate([(t["ts"][res.close_idx] - t["ts"][res.open_idx]).astype(np.int64),
                                   np.full(m, -1, np.int64)]),
        "count": np.concatenate([t["count"][res.open_idx], np.full(m, -1, np.int32)]),
        "holder_contended": np.concatenate([t["contended"][res.open_idx], np.zeros(m, np.bool_)]),
    }


class KmemZoneLockABI:
    """Adapter from the kmem:mm_zone_lock_* events to :class:`Observations` (an :class:`AbiAdapter`)."""

    key: ClassVar[str] = "kmem"
    name: ClassVar[str] = "kmem:mm_zone_lock_* (zone-lock tracepoint patch)"
    events: ClassVar[tuple[str, ...]] = EVENTS
    mergeable: ClassVar[bool] = True  #: per-CPU state only: CPUs analysed apart merge (see :meth:`absorb`)

    def __init__(self, zones: ZoneTable, info: TraceInfo, options: AnalysisOptions):
        self.zones = zones
        self.info = info
        self._pairer = PerCpuPairer()
        self._holds_possible = False
        self._damaged = 0  # events whose node_id/name cannot be a zone: left out, said once at the end
        self._unpaired = 0  # acquisitions seen before any unlock (not paired: maybe a wait-time recording)

    def _table(self, batch: Optional[EventBatch], extra: tuple[str, ...],
               columns: Optional[Table] = None) -> Optional[Table]:
        """Base columns + ``seq`` + the ``extra`` fields of ``batch`` (+ ``columns``), without damaged
        rows (counted)."""
        if batch is None or not len(batch):
            return None
        codes = zone_codes(batch, self.zones)
        t = _base(batch, codes)
        t["seq"] = batch.seq.astype(np.int64, copy=False)
        for name in extra:
            t[name] = batch.fields[name]
        t.update(columns or {})
        bad = codes < 0
        if bad.any():  # a damaged lock or unlock then shows as a broken pair, never a wrong hold
            self._damaged += int(bad.sum())
            t = {k: v[~bad] for k, v in t.items()}
        return t

    def observe(self, chunk: Chunk) -> Observations:
        """Normalise one chunk (pairing carries pending acquisitions to the next)."""
        obs = Observations()
        batches = chunk.batches
        stacks = stacks_of(chunk, CONTENDED)  # recorded with -T / -g
        contended = self._table(batches.get(CONTENDED), (), None if stacks is None else {"stack": stacks})
        if contended is not None:
            del contended["seq"]
            obs.contended = contended
        locked = self._table(batches.get(LOCKED), ("count", "contended", "wait_ns"))
        if locked is not None:
            locked["count"] = locked["count"].astype(np.int32, copy=False)
            locked["contended"] = locked["contended"] != 0
            obs.acquired = {c: locked[c] for c in (*_BASE, "seq", "count", "contended")}
            waited = np.flatnonzero(locked["contended"])
            obs.waits = _rows(locked, waited, (*_BASE, "seq"))
            obs.waits["wait_ns"] = locked["wait_ns"][waited].astype(np.uint64)
        unlock = self._table(batches.get(UNLOCK), ("count",))
        if unlock is not None:
            self._holds_possible = True
        elif not self._holds_possible and locked is not None:
            self._unpaired += len(locked["ts"])
        if self._holds_possible:
            self._pair(obs, locked, unlock, batches.get(MISSED_EVENTS), final=False)
        return obs

    def finish(self) -> Observations:
        """Close the stream: acquisitions still waiting for their unlock become unreleased."""
        obs = Observations()
        if self._holds_possible:
            self._pair(obs, None, None, None, final=True)
        if self._damaged:
            self.info.warnings.append(
                f"{self._damaged} kmem:mm_zone_lock_* events left out: their node_id/name cannot be a zone "
                f"(node ids are below {MAX_NODES}, names like Normal); the file is damaged there")
        return obs

    def _pair(self, obs: Observations, locked: Optional[Table], unlock: Optional[Table], missed: Optional[EventBatch],
              final: bool) -> None:
        if locked is not None and unlock is not None and (missed is None or not len(missed)) and not final:
            if self._pair_alternating(obs, locked, unlock):
                return
        parts = []
        if locked is not None:
            parts.append(_stream(OPEN, locked))
        if unlock is not None:
            parts.append(_stream(CLOSE, unlock))
        if missed is not None and len(missed):
            n = len(missed)
            parts.append(_stream(GAP, {
                "ts": missed.ts.astype(np.uint64), "cpu": missed.cpu.astype(np.int32),
                "pid": missed.pid.astype(np.int32), "zone": np.full(n, -1, np.int32),
                "caller": np.zeros(n, np.uint64), "seq": missed.seq.astype(np.int64), "count": np.zeros(n, np.int32),
            }))
        table = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else _stream(GAP, None)
        res: PairResult = self._pairer.feed(table, final=final)
        t = res.table
        holds = _rows(t, res.open_idx, _SEQ)
        holds["count"] = t["count"][res.open_idx]
        holds["hold_ns"] = t["ts"][res.close_idx] - t["ts"][res.open_idx]
        obs.holds = holds
        obs.unmatched = _rows(t, res.unmatched_close, _SEQ)
        obs.unreleased = _rows(t, res.unreleased_open, _SEQ)
        obs.broken = _rows(t, np.concatenate([res.broken_open, res.broken_close]), _SEQ)
        obs.releases = releases(t, res)

    def _pair_alternating(self, obs: Observations, locked: Table, unlock: Table) -> bool:
        """:meth:`_pair` of the usual chunk, one CPU's acquisitions each released before the next, from
        views of the two tables (no table of both, no sort); False when the chunk is not that."""
        opens = {"cpu": locked["cpu"], "seq": locked["seq"], "key": locked["zone"]}
        closes = {"cpu": unlock["cpu"], "seq": unlock["seq"], "key": unlock["zone"]}
        alt = self._pairer.feed_alternating(opens, closes, _stream(OPEN, {k: v[-1:] for k, v in locked.items()}))
        if alt is None:
            return False
        held = {c: locked[c][: alt.pairs] for c in (*_SEQ, "count", "contended")}
        if alt.carried is not None:  # the open carried in is released first
            held = {c: np.concatenate([alt.carried[c].astype(v.dtype, copy=False), v]) for c, v in held.items()}
        hold_ns = unlock["ts"] - held["ts"]
        obs.holds = {**{c: held[c] for c in _SEQ}, "count": held["count"], "hold_ns": hold_ns}
        obs.holds_from_acquired = alt.first
        empty = {c: unlock[c][:0] for c in _SEQ}
        obs.unmatched, obs.unreleased, obs.broken = empty, dict(empty), dict(empty)
        obs.releases = {
            **{c: unlock[c] for c in ("ts", "cpu", "pid", "zone", "seq")},
            "holder_caller": held["caller"], "holder_seq": held["seq"], "hold_ns": hold_ns.astype(np.int64),
            "count": held["count"], "holder_contended": held["contended"],
        }
        return True

    def counters(self) -> dict:
        """What :meth:`absorb` needs of this adapter, once its CPUs are finished in another process."""
        return {"damaged": self._damaged, "holds_possible": self._holds_possible, "unpaired": self._unpaired}

    def absorb(self, counters: dict) -> bool:
        """Add the :meth:`counters` of the next CPUs' adapter; False when one pass would have differed: it
        would have paired their first acquisitions, as an unlock was seen on the CPUs before."""
        exact = not (self._holds_possible and counters["unpaired"])
        self._damaged += counters["damaged"]
        self._holds_possible = self._holds_possible or counters["holds_possible"]
        return exact

    @staticmethod
    def capabilities(event_counts: Mapping[str, int]) -> Capabilities:
        """What the recorded events allow; the profile is named after the recipe they match."""
        has_c = event_counts.get(CONTENDED, 0) > 0
        has_l = event_counts.get(LOCKED, 0) > 0
        has_u = event_counts.get(UNLOCK, 0) > 0
        if has_l and has_u:
            profile = "hold-time"
        elif has_l:
            profile = "wait-time"
        elif has_c:
            profile = "minimal"
        else:
            profile = "unknown"
        caps = Capabilities(
            abi=KmemZoneLockABI.name, profile=profile,
            contended_events=True, acquisitions=has_l, waits=has_l, holds=has_l and has_u,
        )
        if not has_l:
            caps.cannot.append(
                "acquisitions and wait times: kmem:mm_zone_locked was not recorded (record with --profile wait-time)"
            )
        if not (has_l and has_u):
            caps.cannot.append(
                "hold times: kmem:mm_zone_locked + kmem:mm_zone_lock_unlock were not both recorded "
                "(record with --profile hold-time)"
            )
        if profile == "unknown":
            caps.cannot.insert(0, "no zone-lock event in this recording: either no contention happened "
                                  "(minimal profile) or the events were not enabled")
        caps.cannot.append(_NOT_COVERED)
        return caps
