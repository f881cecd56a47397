"""The seed patch's events: kmem:mm_zone_lock_contended / mm_zone_locked / mm_zone_lock_unlock.

Zone identity is (node_id, name). The locked event carries ``contended`` and ``wait_ns``
(0 when uncontended); holds pair each unlock with the locked event just before it on the
same CPU (see zlperf.analysis.pairing). Holds and waits are attributed to the *locked*
caller: the unlock helper may be inlined one level further up (EVENTS.md §1).
"""

from __future__ import annotations

__all__ = ["KmemZoneLockABI", "CONTENDED", "LOCKED", "UNLOCK", "EVENTS"]

from typing import Optional

import numpy as np

from zlperf.analysis.model import Capabilities, Observations, Table, Zone, ZoneTable
from zlperf.analysis.pairing import CLOSE, GAP, OPEN, PairResult, PerCpuPairer
from zlperf.analysis.stacks import stacks_of
from zlperf.events import MISSED_EVENTS, Chunk, EventBatch

CONTENDED = "kmem:mm_zone_lock_contended"
LOCKED = "kmem:mm_zone_locked"
UNLOCK = "kmem:mm_zone_lock_unlock"
EVENTS = (CONTENDED, LOCKED, UNLOCK)

_NOT_COVERED = (
    "zone->lock taken outside the three traced fast paths (compaction, page isolation, "
    "memory hotplug, vmstat) is not seen by these tracepoints"
)


def zone_codes(batch: EventBatch, zones: ZoneTable) -> np.ndarray:
    """Zone code per row from the (node_id, name) fields."""
    node = batch.fields["node_id"].astype(np.int64)
    name_codes, names = batch.categorical("name")
    # (name, node) as one small integer, so distinct zones come from a bincount, not a sort.
    if len(node) == 0:
        return np.empty(0, dtype=np.int32)
    node_lo, node_span = int(node.min()), int(node.max() - node.min()) + 1
    key = name_codes.astype(np.int64) * node_span + (node - node_lo)
    present = np.flatnonzero(np.bincount(key, minlength=len(names) * node_span))
    table = np.full(len(names) * node_span, -1, dtype=np.int32)
    for k in present.tolist():
        table[k] = zones.code(Zone(node=node_lo + k % node_span, name=str(names[k // node_span])))
    return table[key]


def _base(batch: EventBatch, zone: np.ndarray) -> Table:
    return {
        "ts": batch.ts.astype(np.uint64, copy=False),
        "cpu": batch.cpu.astype(np.int32, copy=False),
        "pid": batch.pid.astype(np.int32, copy=False),
        "zone": zone,
        "caller": batch.fields["caller"].astype(np.uint64, copy=False),
    }


def _rows(table: Table, idx: np.ndarray, columns=("ts", "cpu", "pid", "zone", "caller")) -> Table:
    return {c: table[c][idx] for c in columns}


class KmemZoneLockABI:
    """Adapter from the kmem:mm_zone_lock_* events to :class:`Observations`."""

    name = "kmem:mm_zone_lock_* (zone-lock tracepoint patch)"
    events = EVENTS

    def __init__(self, zones: ZoneTable):
        self.zones = zones
        self._pairer = PerCpuPairer()
        self._holds_possible = False

    def observe(self, chunk: Chunk) -> Observations:
        """Normalise one chunk (pairing carries pending acquisitions to the next)."""
        obs = Observations()
        batches = chunk.batches
        contended = batches.get(CONTENDED)
        if contended is not None and len(contended):
            obs.contended = _base(contended, zone_codes(contended, self.zones))
            stacks = stacks_of(chunk, CONTENDED)  # recorded with -T / -g
            if stacks is not None:
                obs.contended["stack"] = stacks
        locked = batches.get(LOCKED)
        locked_t: Optional[Table] = None
        if locked is not None and len(locked):
            locked_t = _base(locked, zone_codes(locked, self.zones))
            locked_t["count"] = locked.fields["count"].astype(np.int32, copy=False)
            locked_t["contended"] = (locked.fields["contended"] != 0)
            obs.acquired = locked_t
            waited = np.flatnonzero(locked_t["contended"])
            obs.waits = _rows(locked_t, waited)
            obs.waits["wait_ns"] = locked.fields["wait_ns"][waited].astype(np.uint64)
        unlock = batches.get(UNLOCK)
        if unlock is not None and len(unlock):
            self._holds_possible = True
        if self._holds_possible:
            self._pair(obs, locked, locked_t, unlock, batches.get(MISSED_EVENTS), final=False)
        return obs

    def finish(self) -> Observations:
        """Close the stream: acquisitions still waiting for their unlock become unreleased."""
        obs = Observations()
        if self._holds_possible:
            self._pair(obs, None, None, None, None, final=True)
        return obs

    def _pair(self, obs, locked, locked_t, unlock, missed, final: bool) -> None:
        parts = []
        if locked_t is not None:
            parts.append(self._stream(OPEN, locked, locked_t, locked.fields["count"]))
        if unlock is not None and len(unlock):
            t = _base(unlock, zone_codes(unlock, self.zones))
            parts.append(self._stream(CLOSE, unlock, t, unlock.fields["count"]))
        if missed is not None and len(missed):
            n = len(missed)
            gap = {
                "ts": missed.ts.astype(np.uint64), "cpu": missed.cpu.astype(np.int32),
                "pid": missed.pid.astype(np.int32), "zone": np.full(n, -1, np.int32),
                "caller": np.zeros(n, np.uint64),
            }
            parts.append(self._stream(GAP, missed, gap, np.zeros(n, np.int32)))
        if parts:
            table = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        else:
            table = self._stream(GAP, None, None, None)
        res: PairResult = self._pairer.feed(table, final=final)
        t = res.table
        holds = _rows(t, res.open_idx)
        holds["count"] = t["count"][res.open_idx]
        holds["hold_ns"] = t["ts"][res.close_idx] - t["ts"][res.open_idx]
        obs.holds = holds
        obs.unmatched = _rows(t, res.unmatched_close)
        obs.unreleased = _rows(t, res.unreleased_open)
        obs.broken = _rows(t, np.concatenate([res.broken_open, res.broken_close]))

    @staticmethod
    def _stream(kind: int, batch, base: Optional[Table], count) -> Table:
        if base is None:
            return {
                "kind": np.empty(0, np.int8), "seq": np.empty(0, np.int64), "key": np.empty(0, np.int32),
                "ts": np.empty(0, np.uint64), "cpu": np.empty(0, np.int32), "pid": np.empty(0, np.int32),
                "zone": np.empty(0, np.int32), "caller": np.empty(0, np.uint64), "count": np.empty(0, np.int32),
            }
        n = len(base["ts"])
        return {
            "kind": np.full(n, kind, np.int8),
            "seq": batch.seq.astype(np.int64, copy=False),
            "key": base["zone"],
            **{c: base[c] for c in ("ts", "cpu", "pid", "zone", "caller")},
            "count": np.asarray(count).astype(np.int32, copy=False),
        }

    @staticmethod
    def capabilities(event_counts: dict[str, int]) -> Capabilities:
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
