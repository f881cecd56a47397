"""Streaming aggregation of observations: per-group counters and exact distributions, the worst
cases, hold time by batch size, the binned timeline and the contended stacks.

One :class:`Aggregate` per ABI lane. Work per chunk is vectorised (bincounts over dense key
codes); what is kept between chunks is small: counters per group, exact value tables, the top-N
rows, a bounded timeline and the distinct stacks.
"""

from __future__ import annotations

__all__ = ["COUNTERS", "GroupStats", "DimStats", "TopN", "Aggregate"]

from dataclasses import dataclass, field
from typing import Any, Iterator, Optional

import numpy as np

from zlperf.analysis.grouping import KeyCoder
from zlperf.analysis.holders import HolderAttribution
from zlperf.analysis.model import Observations, Table, has_rows, table_len
from zlperf.analysis.options import DIMENSIONS, AnalysisOptions
from zlperf.analysis.stats import Distribution, DistributionsByCode, log2_bucket, split_small
from zlperf.analysis.timeline import Cells, Timeline

COUNTERS = ("contended_events", "acquisitions", "contended", "unmatched_unlocks", "unreleased",
            "broken_by_missed")


@dataclass
class GroupStats:
    """Counters and exact distributions of one zone / caller / CPU / task (a read-only view)."""

    contended_events: int = 0
    acquisitions: int = 0
    contended: int = 0
    wait: Distribution = field(default_factory=Distribution)
    hold: Distribution = field(default_factory=Distribution)
    unmatched_unlocks: int = 0
    unreleased: int = 0
    broken_by_missed: int = 0


class DimStats:
    """Per-group counters of one dimension as arrays indexed by dense key codes.

    Counting is a bincount per table; only the wait/hold distributions are per group.
    """

    def __init__(self) -> None:
        self.coder = KeyCoder()
        self.counts = {name: np.zeros(0, dtype=np.int64) for name in COUNTERS}
        self.wait = DistributionsByCode()
        self.hold = DistributionsByCode()

    def codes(self, keys: np.ndarray) -> np.ndarray:
        """Dense codes of ``keys``, growing the per-group storage for new ones."""
        codes = self.coder.encode(keys)
        n = len(self.coder)
        if n > len(self.wait):
            for name, arr in self.counts.items():
                self.counts[name] = np.concatenate([arr, np.zeros(n - len(arr), dtype=np.int64)])
            self.wait.grow(n)
            self.hold.grow(n)
        return codes

    def count(self, codes: np.ndarray, counter: str) -> None:
        self.counts[counter] += np.bincount(codes, minlength=len(self.coder))

    def distribute(self, codes: np.ndarray, values: np.ndarray, which: str,
                   small: Optional[tuple[np.ndarray, np.ndarray]] = None) -> None:
        """Add ``values`` (uint64) to the ``which`` ("wait" or "hold") distribution of each row's group
        (``small``: :func:`~zlperf.analysis.stats.split_small` of them, when made already)."""
        (self.wait if which == "wait" else self.hold).add(codes, values, small)

    def absorb(self, other: "DimStats", keys: np.ndarray) -> None:
        """Add ``other``'s groups, whose keys are ``keys`` here (in ``other``'s code order)."""
        if not len(keys):
            return
        codes = self.codes(keys).tolist()
        for name, arr in other.counts.items():
            self.counts[name][codes] += arr[: len(codes)]
        wait, hold = self.wait.groups, self.hold.groups
        for code, theirs_wait, theirs_hold in zip(codes, other.wait.groups, other.hold.groups):
            wait[code].merge(theirs_wait)
            hold[code].merge(theirs_hold)

    def total(self) -> GroupStats:
        """All groups together: every row belongs to exactly one group of a dimension."""
        wait, hold = Distribution(), Distribution()
        for d in self.wait.groups:
            wait.merge(d)
        for d in self.hold.groups:
            hold.merge(d)
        return GroupStats(wait=wait, hold=hold, **{name: int(arr.sum()) for name, arr in self.counts.items()})

    def items(self) -> Iterator[tuple[int, GroupStats]]:
        """(key, GroupStats) per group seen."""
        wait, hold = self.wait.groups, self.hold.groups
        for code, key in enumerate(self.coder.keys):
            g = GroupStats(wait=wait[code], hold=hold[code],
                           **{name: int(arr[code]) for name, arr in self.counts.items()})
            yield key, g


class TopN:
    """The N largest values seen, with where and when they happened.

    Equal values keep the earliest in the stream (lowest ``seq``, else the first given), so the rows kept
    do not depend on how the stream was cut into chunks or parts.
    """

    def __init__(self, n: int):
        self.n = n
        self.rows: Optional[Table] = None

    def add(self, table: Table, value_col: str) -> None:
        if not table_len(table) or self.n <= 0:
            return
        if self.rows is not None and len(self.rows[value_col]) >= self.n:
            # Full: a row below the n-th largest kept cannot get in (equal ones can: ties go by stream order).
            can = np.flatnonzero(table[value_col] >= self.rows[value_col].min())
            if not len(can):
                return
            if len(can) < table_len(table):
                table = {k: v[can] for k, v in table.items()}
        merged = table if self.rows is None else {k: np.concatenate([self.rows[k], table[k]]) for k in self.rows}
        values = merged[value_col]
        if len(values) > self.n:
            kth = len(values) - self.n
            threshold = np.partition(values, kth)[kth]  # the n-th largest
            above = np.flatnonzero(values > threshold)
            tied = np.flatnonzero(values == threshold)
            need = self.n - len(above)
            if len(tied) > need:
                tied = tied[np.argsort(_stream_order(merged)[tied], kind="stable")[:need]]
            keep = np.sort(np.concatenate([above, tied]))
            merged = {k: v[keep] for k, v in merged.items()}
        self.rows = merged

    def sorted_rows(self, value_col: str) -> list[dict]:
        """The rows, largest value first; equal values in stream order."""
        if self.rows is None:
            return []
        order = np.lexsort((_stream_order(self.rows), ~self.rows[value_col].astype(np.uint64)))
        return [{k: v[i].item() for k, v in self.rows.items()} for i in order]

    def absorb(self, other: "TopN", value_col: str) -> None:
        """Add the rows ``other`` kept (their zones and positions already in this stream's terms)."""
        if other.rows is not None:
            self.add(other.rows, value_col)


def _stream_order(rows: Table) -> np.ndarray:
    """Where each row is in the stream: its ``seq`` when it has one, else its place in ``rows``."""
    seq = rows.get("seq")
    return seq if seq is not None else np.arange(table_len(rows))


class Aggregate:
    """Everything accumulated from one ABI's observations: per-group counters and distributions,
    hold time by batch size, the worst cases, the timeline and the contended stacks."""

    def __init__(self, options: AnalysisOptions):
        self.dims: dict[str, DimStats] = {d: DimStats() for d in DIMENSIONS}
        self.hold_by_batch = DistributionsByCode()  # hold times by the log2 bucket of the batch size
        self.top_waits = TopN(options.top)
        self.top_holds = TopN(options.top)
        # Series ("all", 0), ("zone", code), ("caller", addr), ("wait_log2", bucket): see zlperf.analysis.timeline.
        self.timeline = Timeline(options.bin_ns)
        self.stacks: dict[bytes, list] = {}  # frames bytes -> [frames, count] of contended events with a stack
        self.holders = HolderAttribution()  # who held the lock behind each wait (hold-time recordings)

    def account(self, obs: Observations) -> None:
        """Add one chunk's observations (already windowed, but for the releases)."""
        self.holders.add(obs.releases, obs.waits)
        self._count(obs.contended, "contended_events", timeline_col=0)
        if has_rows(obs.contended) and "stack" in obs.contended:
            self._count_stacks(obs.contended["stack"])
        acquired_codes: dict[DimStats, np.ndarray] = {}
        acquired_cells = None
        if has_rows(obs.acquired):
            acquired_codes, acquired_cells = self._count(obs.acquired, "acquisitions", timeline_col=1)
            contended = obs.acquired["contended"]
            for dim, c in acquired_codes.items():
                dim.count(c[contended], "contended")
        if has_rows(obs.waits):
            self._distribute(obs.waits, "wait", "wait_ns", timeline_cols=(2, 3))
            self.top_waits.add(obs.waits, "wait_ns")
            buckets = log2_bucket(obs.waits["wait_ns"])  # the latency heatmap: waits per (bin, log2 bucket)
            self.timeline.add(obs.waits["ts"], [("wait_log2", buckets, range(int(buckets.max()) + 1))], [(2, None)])
        if has_rows(obs.holds):
            codes = self._hold_codes(obs, acquired_codes)
            # Holds past the first k are the chunk's first acquisitions: their timeline cells are those too.
            reuse = (acquired_cells, obs.holds_from_acquired or 0) if codes is not None and acquired_cells is not None else None
            small = self._distribute(obs.holds, "hold", "hold_ns", timeline_cols=(4, 5), codes=codes, cells=reuse)
            self.top_holds.add(obs.holds, "hold_ns")
            if "count" in obs.holds:  # batch sizes exist only in the kmem ABI
                buckets = log2_bucket(np.maximum(obs.holds["count"], 0).astype(np.uint64))
                self.hold_by_batch.grow(int(buckets.max()) + 1)
                self.hold_by_batch.add(buckets, obs.holds["hold_ns"], small)
        self._count(obs.unmatched, "unmatched_unlocks")
        self._count(obs.unreleased, "unreleased")
        self._count(obs.broken, "broken_by_missed")

    def absorb(self, other: "Aggregate", zones: np.ndarray, seq_shift: int) -> None:
        """Add the aggregate of CPUs analysed apart, as if their observations had come after this one's:
        ``zones`` maps its zone codes to this stream's, ``seq_shift`` moves its stream positions."""
        def zone_of(codes: np.ndarray) -> np.ndarray:
            codes = np.asarray(codes)
            return np.where(codes >= 0, zones[np.maximum(codes, 0)], codes).astype(codes.dtype, copy=False)

        for dim, mine in self.dims.items():
            theirs = other.dims[dim]
            keys = np.array(theirs.coder.keys, dtype=np.uint64 if dim == "caller" else np.int64)
            if dim == "zone":
                keys = zone_of(keys)
            if dim != "caller":
                keys = keys.astype(np.int32)
            mine.absorb(theirs, keys)
        self.hold_by_batch.grow(len(other.hold_by_batch))
        for mine_batch, theirs_batch in zip(self.hold_by_batch.groups, other.hold_by_batch.groups):
            mine_batch.merge(theirs_batch)
        for mine_top, theirs_top, col in ((self.top_waits, other.top_waits, "wait_ns"),
                                          (self.top_holds, other.top_holds, "hold_ns")):
            if theirs_top.rows is not None:
                rows = dict(theirs_top.rows)
                rows["zone"] = zone_of(rows["zone"])
                if "seq" in rows:
                    rows["seq"] = rows["seq"] + seq_shift
                theirs_top.rows = rows
                mine_top.absorb(theirs_top, col)
        def series_key(key: Any) -> Any:  # ("zone", code): the code here; other series keep their key
            return (key[0], int(zone_of(np.array([key[1]]))[0])) if key[0] == "zone" else key

        self.timeline.absorb(other.timeline, series_key)
        for key, (frames, count) in other.stacks.items():
            entry = self.stacks.get(key)
            if entry is None:
                self.stacks[key] = [frames, count]
            else:
                entry[1] += count
        self.holders.absorb(other.holders, zone_of, seq_shift)

    def _count_stacks(self, stacks: np.ndarray) -> None:
        """Count identical stacks (contended events are rare: a plain loop)."""
        for frames in stacks:
            if frames is None or not len(frames):
                continue
            frames = np.asarray(frames, dtype=np.uint64)
            key = frames.tobytes()
            entry = self.stacks.get(key)
            if entry is None:
                self.stacks[key] = [frames, 1]
            else:
                entry[1] += 1

    def _codes(self, table: Table) -> dict[DimStats, np.ndarray]:
        """Dense group codes of every row, for each dimension (totals are summed from the zones)."""
        out = {}
        for dim, col in DIMENSIONS.items():
            out[self.dims[dim]] = self.dims[dim].codes(table[col])
        return out

    def _hold_codes(self, obs: Observations,
                    acquired_codes: dict[DimStats, np.ndarray]) -> Optional[dict[DimStats, np.ndarray]]:
        """Group codes of ``obs.holds`` taken from its acquisitions' (see Observations.holds_from_acquired),
        or None when the chunk gives no such hint (they are looked up then)."""
        k = obs.holds_from_acquired
        if k is None or not acquired_codes or obs.holds is None:
            return None
        m = table_len(obs.holds) - k  # holds k.. are the first m acquisitions
        out = {}
        for name, col in DIMENSIONS.items():
            dim = self.dims[name]
            mine = acquired_codes[dim][:m]
            out[dim] = np.concatenate([dim.codes(obs.holds[col][:k]), mine]) if k else mine
        return out

    def _count(self, table: Optional[Table], counter: str,
               timeline_col: Optional[int] = None) -> tuple[dict[DimStats, np.ndarray], Optional[Cells]]:
        """Count ``table``'s rows in every dimension (and on the timeline): their group codes and timeline cells."""
        if not has_rows(table):
            return {}, None
        codes = self._codes(table)
        for dim, c in codes.items():
            dim.count(c, counter)
        cells = self._bin(table, codes, [(timeline_col, None)]) if timeline_col is not None else None
        return codes, cells

    def _distribute(self, table: Table, which: str, col: str, timeline_cols: tuple[int, int],
                    codes: Optional[dict[DimStats, np.ndarray]] = None,
                    cells: Optional[tuple[Cells, int]] = None) -> tuple[np.ndarray, np.ndarray]:
        """Add ``table[col]`` to the distributions of every row's groups and to the timeline; returns the
        values' :func:`~zlperf.analysis.stats.split_small`."""
        values = table[col]
        codes = codes if codes is not None else self._codes(table)
        small = split_small(values)  # once for every dimension
        for dim, c in codes.items():
            dim.distribute(c, values, which, small)
        self._bin(table, codes, [(timeline_cols[0], None), (timeline_cols[1], values)], cells)
        return small

    def _bin(self, table: Table, codes: dict[DimStats, np.ndarray], columns: list,
             reuse: Optional[tuple[Cells, int]] = None) -> Cells:
        """Add rows into timeline counters: overall, per zone, per caller (``columns`` and ``reuse`` as
        Timeline.add)."""
        zone, caller = self.dims["zone"], self.dims["caller"]
        return self.timeline.add(table["ts"], [("all", None, [0]), ("zone", codes[zone], zone.coder.keys),
                                                ("caller", codes[caller], caller.coder.keys)], columns, reuse)
