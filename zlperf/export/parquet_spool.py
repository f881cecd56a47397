"""The rows of a Parquet export, chunk by chunk, while the analysis runs (the analyzer's observer).

Every lane's observations become raw numeric rows (zone codes, caller addresses) in files of the export's
temporary folder as they come (a file per column, numpy only); only the acquisitions still waiting for their release stay in memory (one
per CPU: a release pairs with the acquisition just before it on its CPU, and an acquisition left open is
reported unreleased or broken in the same chunk or the next). Names, strings and holders are added once
the analysis has finished (:mod:`zlperf.export.parquet`).
"""

from __future__ import annotations

__all__ = ["RAW", "Spool", "Lane", "RawTable"]

from pathlib import Path
from typing import BinaryIO, Iterator, Optional

import numpy as np

from zlperf.analysis.model import Observations, Table, table_len
from zlperf.export.schema import PAIRING_KINDS

#: Raw columns per table (numbers only); -1 marks "none" in wait_ns, hold_ns, stack_id and contended.
RAW: dict[str, dict[str, type]] = {
    "acquisitions": {"seq": np.int64, "ts": np.int64, "cpu": np.int32, "pid": np.int32, "zone": np.int32,
                     "caller": np.uint64, "contended": np.int8, "wait_ns": np.int64, "hold_ns": np.int64,
                     "batch": np.int32},
    "contended": {"ts": np.int64, "cpu": np.int32, "pid": np.int32, "zone": np.int32, "caller": np.uint64,
                  "stack_id": np.int32},
    "stock_waits": {"ts": np.int64, "cpu": np.int32, "pid": np.int32, "zone": np.int32, "caller": np.uint64,
                    "wait_ns": np.int64, "stack_id": np.int32},
    "pairing": {"seq": np.int64, "ts": np.int64, "cpu": np.int32, "pid": np.int32, "zone": np.int32,
                "caller": np.uint64, "kind": np.int8},
}
_INT64_MAX = np.uint64((1 << 63) - 1)


def _durations(values: np.ndarray, lane: "Lane") -> np.ndarray:
    """ns durations as int64; a damaged value of 2^63 ns or more (292 years) is clamped and counted."""
    v = np.asarray(values, dtype=np.uint64)
    big = v > _INT64_MAX
    if big.any():
        lane.clamped += int(big.sum())
        v = np.minimum(v, _INT64_MAX)
    return v.astype(np.int64)


def _positions(keys: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in ``keys`` of each query, whether it is there); keys are unique (stream positions)."""
    if not len(keys):
        return np.zeros(len(queries), dtype=np.int64), np.zeros(len(queries), dtype=bool)
    order = np.argsort(keys, kind="stable")
    pos = np.minimum(np.searchsorted(keys[order], queries), len(keys) - 1)
    found = keys[order][pos] == queries
    return order[pos], found


class RawTable:
    """Rows of one raw table: each column appended to its own file as the chunks come (numpy only, so no
    Parquet library is loaded while the analysis holds its memory); read back in slices."""

    def __init__(self, folder: Path, prefix: str, columns: dict[str, type]):
        self.columns = columns
        self.paths = {k: folder / f"{prefix}.{k}.bin" for k in columns}
        self.rows = 0
        self._files: dict[str, BinaryIO] = {}

    def add(self, rows: Table) -> None:
        n = len(rows["ts"])
        if not n:
            return
        if not self._files:
            self._files = {k: open(p, "wb") for k, p in self.paths.items()}  # noqa: SIM115 (closed in close())
        for k, dt in self.columns.items():
            np.asarray(rows[k], dtype=dt).tofile(self._files[k])
        self.rows += n

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files = {}

    def slices(self, size: int) -> Iterator[dict[str, np.ndarray]]:
        """The rows again, ``size`` at a time."""
        for start in range(0, self.rows, size):
            count = min(size, self.rows - start)
            yield {k: np.fromfile(self.paths[k], dtype=dt, count=count, offset=start * np.dtype(dt).itemsize)
                   for k, dt in self.columns.items()}


class Lane:
    """One ABI's raw tables, pending acquisitions and distinct stacks."""

    def __init__(self, folder: Path, key: str):
        self.key = key
        self.tables = {name: RawTable(folder, f"{key}.{name}", cols) for name, cols in RAW.items()}
        self.pending: Optional[Table] = None  # acquisitions waiting for their hold
        self.stack_ids: dict[bytes, int] = {}
        self.stacks: list[np.ndarray] = []  #: stack id -> frames (uint64, innermost first), first seen first
        self.has_batch = False  #: acquisitions carry a batch size (kmem's count)
        self.clamped = 0  #: durations of 2^63 ns or more, clamped

    def add(self, obs: Observations) -> None:
        """One chunk's observations of this lane."""
        if self.key == "stock":  # stock ABI: its waits are its contended events, row for row
            if table_len(obs.waits):
                w = obs.waits
                self.tables["stock_waits"].add({**{k: w[k] for k in ("ts", "cpu", "pid", "zone", "caller")},
                                                "wait_ns": _durations(w["wait_ns"], self),
                                                "stack_id": self._stack_ids(obs.contended)})
        elif table_len(obs.contended):
            c = obs.contended
            self.tables["contended"].add({**{k: c[k] for k in ("ts", "cpu", "pid", "zone", "caller")},
                                          "stack_id": self._stack_ids(c)})
        self._acquisitions(obs)
        for kind, table in zip(PAIRING_KINDS, (obs.unmatched, obs.unreleased, obs.broken)):
            if table_len(table) and "seq" in table:
                self.tables["pairing"].add({**table, "kind": np.full(len(table["ts"]), PAIRING_KINDS.index(kind))})

    def _stack_ids(self, contended: Optional[Table]) -> np.ndarray:
        """Stack id per contended row (-1: no stack); stacks numbered in order of first sight."""
        n = table_len(contended)
        out = np.full(n, -1, dtype=np.int32)
        if not n or "stack" not in contended:  # type: ignore[operator]
            return out
        for i, frames in enumerate(contended["stack"]):  # type: ignore[index]
            if frames is None or not len(frames):
                continue
            frames = np.asarray(frames, dtype=np.uint64)
            key = frames.tobytes()
            sid = self.stack_ids.get(key)
            if sid is None:
                sid = self.stack_ids[key] = len(self.stacks)
                self.stacks.append(frames)
            out[i] = sid
        return out

    def _acquisitions(self, obs: Observations) -> None:
        """New acquisitions (with their waits) join those pending; those whose fate is known are written."""
        acq = obs.acquired
        if table_len(acq) and "seq" in acq:  # type: ignore[operator]
            n = len(acq["ts"])  # type: ignore[index]
            wait = np.full(n, -1, dtype=np.int64)
            if table_len(obs.waits) and "seq" in obs.waits:  # type: ignore[operator]
                pos, found = _positions(acq["seq"], obs.waits["seq"])  # type: ignore[index]
                wait[pos[found]] = _durations(obs.waits["wait_ns"][found], self)  # type: ignore[index]
            self.has_batch = self.has_batch or "count" in acq  # type: ignore[operator]
            new = {"seq": acq["seq"], "ts": acq["ts"], "cpu": acq["cpu"], "pid": acq["pid"],  # type: ignore[index]
                   "zone": acq["zone"], "caller": acq["caller"],  # type: ignore[index]
                   "contended": np.asarray(acq["contended"], dtype=np.int8),  # type: ignore[index]
                   "wait_ns": wait, "hold_ns": np.full(n, -1, dtype=np.int64),
                   "batch": acq["count"] if "count" in acq else np.full(n, -1, np.int32)}  # type: ignore[index,operator]
            rows = new if self.pending is None else {k: np.concatenate([self.pending[k], new[k]]) for k in new}
        elif self.pending is not None:
            rows = self.pending
        else:
            return
        if obs.holds is None:  # this ABI pairs no holds (yet): no release will come for these
            self.pending = None
            self.tables["acquisitions"].add(rows)
            return
        done = np.zeros(len(rows["seq"]), dtype=bool)
        if table_len(obs.holds):
            pos, found = _positions(rows["seq"], obs.holds["seq"])
            rows["hold_ns"][pos[found]] = _durations(obs.holds["hold_ns"][found], self)
            done[pos[found]] = True
        for table in (obs.unreleased, obs.broken):  # never released: written with a null hold
            if table_len(table):
                pos, found = _positions(rows["seq"], table["seq"])  # type: ignore[index]
                done[pos[found]] = True
        self.tables["acquisitions"].add({k: v[done] for k, v in rows.items()})
        self.pending = {k: v[~done] for k, v in rows.items()} if not done.all() else None

    def close(self) -> None:
        """The end of the stream: acquisitions still pending were never released."""
        if self.pending is not None:
            self.tables["acquisitions"].add(self.pending)
            self.pending = None
        for t in self.tables.values():
            t.close()


class Spool:
    """The analyzer's observer: a :class:`Lane` per ABI that produced observations."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.lanes: dict[str, Lane] = {}

    def __call__(self, abi: str, obs: Observations) -> None:
        lane = self.lanes.get(abi)
        if lane is None:
            lane = self.lanes[abi] = Lane(self.folder, abi)
        lane.add(obs)

    def close(self, abi: Optional[str]) -> Lane:
        """Close every lane; the one of ``abi`` (an empty one if it saw nothing) is returned."""
        for lane in self.lanes.values():
            lane.close()
        chosen = self.lanes.get(abi or "") or Lane(self.folder, abi or "none")
        return chosen
