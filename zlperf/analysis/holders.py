"""Who made them wait: the holder of zone->lock behind every contended acquisition.

Rules (exactly these, so the numbers can be checked from ``trace-cmd report`` text):

- A *release* is every traced unlock (kmem: mm_zone_lock_unlock; series: zone_lock_released). Its
  acquisition is the one it pairs with per CPU (:mod:`zlperf.analysis.pairing`); the *holder caller*
  is that acquisition's locked caller, or :data:`NO_ACQUISITION` when the release has none (trylock
  paths take the lock without the traced helper; or a ring-buffer gap hid it).
- For each contended acquisition W (zone z, CPU c, timestamp t, wait w) the holder is the latest
  release of z on a CPU other than c with timestamp <= t. With none, or one earlier than t - w, the
  holder is :data:`NOT_TRACED`: the lock was held by a path without tracepoints (rmqueue_buddy,
  compaction, isolation, hotplug, vmstat ...) or since before the recording began.
- Releases with the same timestamp keep file order: by CPU, then by their place in the CPU's
  stream (the order trace-cmd report prints them; it merges CPUs by timestamp, lower CPU first).
- A *hand-off* is a wait whose holder acquired the lock by a contended acquisition itself; chains of
  hand-offs are convoys.

Releases are kept for the whole recording (readers deliver CPUs one after another, and a wait on one
CPU needs the releases of all others), per zone and CPU in the order they came: a CPU's order is time
order, so the attribution at the end is a searchsorted per zone and CPU, with no global sort. Each
chunk's releases are kept zstd-compressed (timestamps and stream positions as deltas): 41 bytes per
release become a few, which is what lets a multi-million-event trace fit in a few hundred MB.
"""

from __future__ import annotations

__all__ = ["NOT_TRACED", "NO_ACQUISITION", "RELEASE_COLUMNS", "HolderAttribution", "Attributed"]

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from zlperf.analysis.model import Table, has_rows, table_len
from zlperf.arrays import distinct

try:  # a declared dependency; without it releases are kept uncompressed (more memory, same answers)
    import zstandard
except ImportError:  # pragma: no cover
    zstandard = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from zlperf.analysis.result import Holders

NOT_TRACED = "(not traced)"
NO_ACQUISITION = "(no acquisition seen)"

#: Columns of an Observations.releases table: the release event, then its holder (the paired acquisition).
RELEASE_COLUMNS = {
    "ts": np.uint64, "cpu": np.int32, "pid": np.int32, "zone": np.int32, "seq": np.int64,
    "holder_caller": np.uint64,  # 0: no acquisition seen
    "holder_seq": np.int64,  # -1: no acquisition seen
    "hold_ns": np.int64,  # -1: unknown
    "count": np.int32,  # the acquisition's batch size; -1 unknown
    "holder_contended": np.bool_,  # the acquisition waited itself
}
#: What is kept of each release until the end (zone and CPU are the group's; ts is searched).
_KEPT = ("ts", "pid", "holder_caller", "holder_seq", "hold_ns", "count", "holder_contended")
_WAIT_COLUMNS = {"ts": np.uint64, "cpu": np.int32, "pid": np.int32, "zone": np.int32, "caller": np.uint64,
                 "wait_ns": np.uint64, "seq": np.int64}


@dataclass
class Attributed:
    """Every wait of the window with its holder's release, row by row (``traced`` False: not traced)."""

    waits: Table  #: the waits: ts cpu pid zone caller wait_ns seq
    traced: np.ndarray  #: bool: a holder was found
    holder: Table  #: the holder's release, aligned with ``waits`` (RELEASE_COLUMNS but seq; junk where not traced)
    parent: np.ndarray  #: the wait (index) whose acquisition this one waited behind, -1 if none in the window
    chain: np.ndarray  #: back-to-back contended acquisitions in the chain ending with this wait (1: no hand-off)

    def only(self, keep: np.ndarray) -> "Attributed":
        """The attribution of the waits ``keep`` (a mask) alone; chains to left-out waits are cut."""
        index = np.full(len(keep), -1, dtype=np.int64)
        index[keep] = np.arange(int(keep.sum()))
        parent = self.parent[keep]
        parent = np.where(parent >= 0, index[np.maximum(parent, 0)], -1)
        return Attributed({k: v[keep] for k, v in self.waits.items()}, self.traced[keep],
                          {k: v[keep] for k, v in self.holder.items()}, parent, self.chain[keep])


_DELTA = ("ts", "holder_seq")  # increasing within a CPU's releases: stored as differences from the previous


@dataclass(frozen=True)
class Packed:
    """A chunk's kept columns of a group: each column as its differences from its smallest value (frame of
    reference; the increasing ones, :data:`_DELTA`, as differences from the previous value first) in the
    fewest bytes that hold them, in two zstd frames: the times (the end searches every time but reads the
    other columns of the found releases only), and the other columns."""

    ts: bytes
    rest: bytes
    lows: tuple[int, ...]  #: each _KEPT column's smallest value (of the differences, for _DELTA columns)
    widths: tuple[int, ...]  #: bytes per value of each _KEPT column as stored
    firsts: tuple[int, ...]  #: each _DELTA column's first value (the differences start from it); 0 for others


_codecs = threading.local()  # one zstd compressor and decompressor per thread: a context costs a fifth of a frame


def _codec(kind: str) -> Any:
    codec = getattr(_codecs, kind, None)
    if codec is None:
        codec = zstandard.ZstdCompressor(level=1) if kind == "compress" else zstandard.ZstdDecompressor()
        setattr(_codecs, kind, codec)
    return codec


def _frame(raw: np.ndarray) -> bytes:
    if zstandard is None:
        return raw.tobytes()
    frame = _codec("compress").compress(raw)
    # The frame's bytes object keeps the allocation of the worst case (the input's size) whatever its
    # length: a copy of its length is what a recording's worth of kept parts may hold.
    return bytes(memoryview(frame))


_WIDTHS = (1, 2, 4, 8)


def _width(span: int) -> np.dtype:
    """The narrowest unsigned type that holds 0..``span``."""
    return np.dtype(f"<u{next(w for w in _WIDTHS if span < 1 << (8 * w))}")


def _narrow(v: np.ndarray) -> tuple[int, np.ndarray]:
    """(smallest value modulo 2^64, differences from it in the fewest bytes) of a non-empty integer or bool
    column (compared as signed or unsigned, as its type says)."""
    if v.dtype == np.bool_:
        return 0, v.view(np.uint8)
    lo = int(v.min())
    narrow = _width(int(v.max()) - lo)
    if v.dtype.itemsize < 8:  # the difference cannot overflow 64 bits
        return lo % (1 << 64), (v.astype(np.int64) - lo).astype(narrow)
    low = lo % (1 << 64)  # modulo 2^64 the difference is exact whatever the signs
    return low, (v.view(np.uint64) - np.uint64(low)).astype(narrow)


def _pack(part: Table) -> Packed:
    """One chunk's kept columns of a group (at least one release), narrowed and compressed (:class:`Packed`)."""
    lows, widths, firsts, cols = [], [], [], []
    for k in _KEPT:
        v: np.ndarray = np.asarray(part[k], dtype=RELEASE_COLUMNS[k])
        if k in _DELTA:  # increasing: differences from the previous value, which start with 0
            u = v.view(np.uint64)  # two's complement: modulo 2^64 any order round-trips
            firsts.append(int(u[0]))
            d = np.empty_like(u)
            np.subtract(u[1:], u[:-1], out=d[1:])
            d[0] = 0
            lo, narrow = 0, d.astype(_width(int(d.max())))
        else:
            firsts.append(0)
            lo, narrow = _narrow(v)
        lows.append(lo)
        widths.append(narrow.dtype.itemsize)
        cols.append(narrow)
    return Packed(_frame(cols[0]), _frame(np.concatenate([c.view(np.uint8) for c in cols[1:]])),
                  tuple(lows), tuple(widths), tuple(firsts))


def _unpack(packed: Packed, n: int, columns: tuple[str, ...] = _KEPT, rows: Optional[np.ndarray] = None) -> Table:
    """The ``columns`` of a packed part of ``n`` releases; with ``rows``, of those rows only."""
    out: Table = {}
    widths = packed.widths
    for frame, first, last in ((packed.ts, 0, 1), (packed.rest, 1, len(_KEPT))):
        if not any(k in columns for k in _KEPT[first:last]):
            continue
        size = n * sum(widths[first:last])
        raw = (_codec("decompress").decompress(frame, max_output_size=size)
               if zstandard is not None else frame)
        at = 0
        for i in range(first, last):
            k = _KEPT[i]
            if k in columns:
                v = np.frombuffer(raw, dtype=np.dtype(f"<u{widths[i]}"), count=n, offset=at)
                low = np.uint64(packed.lows[i])
                if k in _DELTA:  # differences start with 0, so their smallest value (low) is 0
                    if rows is not None and len(rows):
                        v = v[: int(rows.max()) + 1]  # the running sum up to the last row asked for
                    v = np.cumsum(v, dtype=np.uint64)
                    v += np.uint64(packed.firsts[i])
                    if rows is not None:
                        v = v[rows]
                else:
                    v = (v if rows is None else v[rows]).astype(np.uint64)
                    if low:
                        v += low
                out[k] = v.astype(RELEASE_COLUMNS[k], copy=False)  # two's complement back (the bits are kept)
            at += n * widths[i]
    return out


class _Group:
    """The releases of one zone on one CPU, in the CPU's own order (which is time order), chunk by chunk,
    each chunk's part compressed."""

    __slots__ = ("parts", "sizes", "shifts", "inherited")

    def __init__(self) -> None:
        self.parts: list[Packed] = []
        self.sizes: list[int] = []
        self.shifts: list[int] = []  # added to each part's holder_seq (parts analysed in another process)
        self.inherited = 0  # leading parts carried over from the previous interval of a live stream

    def add(self, part: Table) -> None:
        self.parts.append(_pack(part))
        self.sizes.append(len(part["ts"]))
        self.shifts.append(0)

    def times(self) -> np.ndarray:
        """Every release's timestamp, joined (only they are searched; the other columns stay per chunk)."""
        ts = np.empty(sum(self.sizes), dtype=np.uint64)  # filled part by part: no second copy
        at = 0
        for p, n in zip(self.parts, self.sizes):
            ts[at:at + n] = _unpack(p, n, ("ts",))["ts"]
            at += n
        return ts

    def rows(self, pos: np.ndarray) -> Table:
        """Kept columns of releases at positions ``pos`` (sorted or not) of the joined order."""
        ends = np.cumsum(self.sizes)
        part = np.searchsorted(ends, pos, side="right")
        start = ends - np.array(self.sizes)
        out: Table = {k: np.empty(len(pos), dtype=RELEASE_COLUMNS[k]) for k in _KEPT}
        for i in distinct(part).tolist():
            sel = part == i
            cols = _unpack(self.parts[i], self.sizes[i], rows=pos[sel] - start[i])
            if self.shifts[i]:
                seq = cols["holder_seq"]
                cols["holder_seq"] = np.where(seq >= 0, seq + self.shifts[i], seq)
            for k in _KEPT:
                out[k][sel] = cols[k]
        return out


class HolderAttribution:
    """Collects releases (all of them) and waits (windowed) chunk by chunk; attributes at the end.

    Releases are kept per (zone, CPU): each CPU's releases come in its own order, which is time
    order, so the end needs no global sort, only a searchsorted per CPU.
    """

    def __init__(self) -> None:
        self._groups: dict[tuple[int, int], _Group] = {}
        self._waits: list[Table] = []
        self.seen_releases = False  #: whether the recording has releases at all (hold-time recordings)

    def add(self, releases: Optional[Table], waits: Optional[Table]) -> None:
        """One chunk: its releases (not windowed: a holder may precede the window) and its waits."""
        if has_rows(releases):
            self.seen_releases = True
            zone, cpu = releases["zone"], releases["cpu"]
            one_cpu = bool((cpu == cpu[0]).all())  # the fast reader: one CPU per chunk
            zones = _few_codes(zone) if one_cpu else None
            splits: list[tuple[tuple[int, int], Optional[np.ndarray]]]
            if zones is not None and len(zones) == 1:
                splits = [((zones[0], int(cpu[0])), None)]
            elif zones is not None and bool((np.diff(releases["seq"]) >= 0).all()):
                # In stream order already: each zone's rows, in order, are its group's (no sort).
                splits = [((z, int(cpu[0])), np.flatnonzero(zone == z)) for z in zones]
            else:
                order = np.lexsort((releases["seq"], cpu, zone))
                z, c = zone[order], cpu[order]
                cuts = np.flatnonzero((z[1:] != z[:-1]) | (c[1:] != c[:-1])) + 1
                splits = [((int(z[a]), int(c[a])), order[a:b])
                          for a, b in zip(np.r_[0, cuts].tolist(), np.r_[cuts, len(z)].tolist())]
            for key, rows in splits:
                part = {k: releases[k] if rows is None else releases[k][rows] for k in _KEPT}
                self._groups.setdefault(key, _Group()).add(part)
        if has_rows(waits) and "seq" in waits:
            self._waits.append({k: np.asarray(waits[k], dtype=dt) for k, dt in _WAIT_COLUMNS.items()})

    def carry(self) -> "HolderAttribution":
        """An empty attribution for the next interval of a live stream, holding this interval's releases.

        A wait just after the cut may be behind a release just before it, so each interval searches its own
        releases and those of the interval before (not older ones: a wait longer than an interval is
        attributed to a holder only if it released in those two). Call before :meth:`finish`.
        """
        nxt = HolderAttribution()
        nxt.seen_releases = self.seen_releases
        for key, g in self._groups.items():
            own = g.parts[g.inherited:]
            if own:
                carried = nxt._groups[key] = _Group()
                carried.parts = list(own)
                carried.sizes = list(g.sizes[g.inherited:])
                carried.shifts = list(g.shifts[g.inherited:])
                carried.inherited = len(own)
        return nxt

    def absorb(self, other: "HolderAttribution", zone_of: Callable[[np.ndarray], np.ndarray], seq_shift: int) -> None:
        """Add the releases and waits of CPUs analysed apart: ``zone_of`` maps their zone codes to this
        stream's, ``seq_shift`` moves their stream positions."""
        self.seen_releases = self.seen_releases or other.seen_releases
        for (zone, cpu), g in other._groups.items():
            g.shifts = [s + seq_shift for s in g.shifts]
            key = (int(zone_of(np.array([zone]))[0]), cpu)
            mine = self._groups.get(key)
            if mine is None:
                self._groups[key] = g
            else:  # not when parts hold different CPUs; kept right all the same
                mine.parts += g.parts
                mine.sizes += g.sizes
                mine.shifts += g.shifts
        for w in other._waits:
            self._waits.append({**w, "zone": zone_of(w["zone"]), "seq": w["seq"] + seq_shift})

    def finish(self) -> Optional[Attributed]:
        """Attribute every wait; None when the recording has no releases (no holders can be known)."""
        if not self.seen_releases:
            return None
        waits = _concat_consuming(self._waits, _WAIT_COLUMNS)
        n = table_len(waits)
        best_group = np.full(n, -1, dtype=np.int64)
        best_pos = np.zeros(n, dtype=np.int64)
        best_ts = np.zeros(n, dtype=np.uint64)
        groups = sorted(self._groups.items())  # by zone, then CPU ascending: the file order of equal times
        for gi, ((zone, cpu), g) in enumerate(groups):
            mine = np.flatnonzero((waits["zone"] == zone) & (waits["cpu"] != cpu))
            if not len(mine):
                continue
            ts = g.times()  # one group's times at a time: memory stays flat however many groups
            if len(ts) > 1 and (ts[1:] < ts[:-1]).any():  # a clock that stepped back: search a sorted copy
                order = np.argsort(ts, kind="stable")
                ts = ts[order]
            else:
                order = None
            pos = np.searchsorted(ts, waits["ts"][mine], side="right") - 1
            found = pos >= 0
            cand = ts[np.maximum(pos, 0)]
            # The latest so far; on equal timestamps the higher CPU (iterated later) is later in file order.
            better = found & ((best_group[mine] < 0) | (cand >= best_ts[mine]))
            take = mine[better]
            best_group[take] = gi
            best_pos[take] = pos[better] if order is None else order[pos[better]]
            best_ts[take] = cand[better]
        began = waits["ts"].astype(np.int64) - waits["wait_ns"].astype(np.int64)
        traced = (best_group >= 0) & (best_ts.astype(np.int64) >= began)
        holder: Table = {k: np.zeros(n, dtype=dt) for k, dt in RELEASE_COLUMNS.items() if k != "seq"}
        for gi in distinct(best_group[traced]).tolist():
            (zone, cpu), g = groups[gi]
            rows = np.flatnonzero(traced & (best_group == gi))
            for k, v in g.rows(best_pos[rows]).items():
                holder[k][rows] = v
            holder["zone"][rows] = zone
            holder["cpu"][rows] = cpu
        self._groups = {}
        parent, chain = _chains(waits, traced, holder)
        return Attributed(waits=waits, traced=traced, holder=holder, parent=parent, chain=chain)


def _few_codes(codes: np.ndarray, most: int = 8) -> Optional[list[int]]:
    """The distinct values of ``codes`` in ascending order when they span at most ``most`` (a chunk's zones),
    else None."""
    lo, hi = int(codes.min()), int(codes.max())
    if hi - lo >= most:
        return None
    return (np.flatnonzero(np.bincount(codes - lo, minlength=hi - lo + 1)) + lo).tolist()


def _concat_consuming(parts: list[Table], columns: dict) -> Table:
    """The ``parts`` joined, emptying them column by column: at most one column is held twice."""
    out: Table = {}
    for k, dt in columns.items():
        out[k] = np.concatenate([p.pop(k) for p in parts]) if parts else np.empty(0, dtype=dt)
    parts.clear()
    return out


def _chains(waits: Table, traced: np.ndarray, holder: Table) -> tuple[np.ndarray, np.ndarray]:
    """(parent, length) per wait: the wait whose acquisition it waited behind (-1: none in the window),
    and the number of back-to-back contended acquisitions in the chain ending with it (1: no hand-off).

    The holder's acquisition is found among the waits by its stream position (seq); lengths follow by
    pointer doubling: a few vectorised passes however long the chains.
    """
    n = len(traced)
    parent = np.full(n, -1, dtype=np.int64)
    length = np.ones(n, dtype=np.int64)
    if not n:
        return parent, length
    by_seq = np.argsort(waits["seq"], kind="stable")
    seqs = waits["seq"][by_seq]
    has = np.flatnonzero(traced)
    handoff = holder["holder_contended"][has]
    hseq = holder["holder_seq"][has]
    pos = np.minimum(np.searchsorted(seqs, hseq), n - 1)
    found = handoff & (seqs[pos] == hseq)
    parent[has[found]] = by_seq[pos[found]]
    jump = parent.copy()
    while True:
        live = np.flatnonzero(jump >= 0)
        if not len(live):
            return parent, length
        target = jump[live]
        length[live] += length[target]
        jump[live] = jump[target]


# -- the result ------------------------------------------------------------------------------------------

def summarize(att: Attributed, sym: Callable[[int], str], comm: Callable[[int], str], top: int,
              waits_are_contended: bool = True) -> "Holders":
    """The :class:`~zlperf.analysis.result.Holders` of an attribution (callers symbolized with ``sym``).

    ``waits_are_contended`` False (the zone_lock:* series, whose waits are every acquisition's
    start -> acquire): a wait with no release of its zone on another CPU inside it had no holder and
    was not contended; such waits are counted as uncontended and left out. The series instruments
    every zone->lock user, so NOT_TRACED cannot occur there.
    """
    from zlperf.analysis.result import Handoff, HolderCost, Holders

    uncontended = 0
    if not waits_are_contended:
        uncontended = int((~att.traced).sum())
        att = att.only(att.traced)
    w = att.waits
    n = len(att.traced)
    traced = att.traced
    wait_ns = w["wait_ns"].astype(np.int64)
    holder_caller = np.where(traced, att.holder["holder_caller"], 0).astype(np.uint64)
    no_acq = traced & (att.holder["holder_seq"] < 0)
    handed = traced & att.holder["holder_contended"]

    def holder_name(addr: int, traced_row: bool, no_acquisition: bool) -> str:
        if not traced_row:
            return NOT_TRACED
        return NO_ACQUISITION if no_acquisition else sym(addr)

    # Waiter caller x holder caller: group rows by the pair of codes (few distinct callers).
    state = np.where(~traced, 0, np.where(no_acq, 1, 2))  # not traced / no acquisition / a caller
    pairs: dict[tuple[str, str], list[int]] = {}
    uniq, inverse = _unique_rows([w["caller"], holder_caller, state.astype(np.uint64)])
    counts = np.bincount(inverse, minlength=len(uniq)) if n else np.zeros(0, np.int64)
    for (waiter, holder, st), c, s in zip(uniq, counts.tolist(), _exact_sums(inverse, wait_ns, len(uniq))):
        key = (sym(int(waiter)), holder_name(int(holder), st != 0, st == 1))
        acc = pairs.setdefault(key, [0, 0])  # two addresses can share a symbol (no kallsyms: never)
        acc[0] += int(c)
        acc[1] += int(s)
    handoffs = [Handoff(a, b, c, s) for (a, b), (c, s) in pairs.items()]
    handoffs.sort(key=lambda x: (-x.wait_ns_sum, -x.waits, x.waiter_caller, x.holder_caller))

    # Costliest holders: (holder caller, releasing task, CPU).
    costs: dict[tuple, list[int]] = {}
    if traced.any():
        rel = att.holder
        uniq, inverse = _unique_rows([holder_caller[traced], no_acq[traced].astype(np.uint64),
                                      rel["pid"][traced].astype(np.int64).view(np.uint64),
                                      rel["cpu"][traced].astype(np.uint64)])
        counts = np.bincount(inverse, minlength=len(uniq))
        for (caller, none, pid, cpu), c, s in zip(uniq, counts.tolist(),
                                                  _exact_sums(inverse, wait_ns[traced], len(uniq))):
            pid = int(np.uint64(pid).view(np.int64))
            costs[(holder_name(int(caller), True, bool(none)), pid, int(cpu))] = [int(c), int(s)]
    top_rows = sorted((HolderCost(caller, pid, comm(pid), cpu, c, s) for (caller, pid, cpu), (c, s) in costs.items()),
                      key=lambda x: (-x.wait_ns_sum, -x.waits, x.caller, x.pid))[:top]

    # Convoys: maximal chains end at waits nobody waited behind.
    is_parent = np.zeros(n, dtype=bool)
    is_parent[att.parent[att.parent >= 0]] = True
    lengths, chains = np.unique(att.chain[~is_parent], return_counts=True)
    return Holders(
        waits=n, wait_ns_sum=int(wait_ns.sum()), not_traced=int((~traced).sum()),
        not_traced_wait_ns_sum=int(wait_ns[~traced].sum()), no_acquisition_seen=int(no_acq.sum()),
        handed_off=int(handed.sum()), uncontended=uncontended, handoffs=handoffs, by_caller=by_holder(handoffs),
        top=top_rows,
        convoys={int(length): int(c) for length, c in zip(lengths.tolist(), chains.tolist())})


def by_holder(handoffs: list) -> list[tuple[str, int, int]]:
    """(holder caller, waits, wait ns) summed over waiter callers, most wait first."""
    acc: dict[str, list[int]] = {}
    for x in handoffs:
        a = acc.setdefault(x.holder_caller, [0, 0])
        a[0] += x.waits
        a[1] += x.wait_ns_sum
    return sorted(((k, n, w) for k, (n, w) in acc.items()), key=lambda r: (-r[2], -r[1], r[0]))


def _unique_rows(columns: list[np.ndarray]) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """(distinct rows in ascending order, column by column; each row's index among them) of uint64
    columns: ``np.unique(np.stack(columns, 1), axis=0, return_inverse=True)`` without its slow row
    sort. Each column becomes dense codes (few distinct values: callers, pids, CPUs), the codes one
    mixed-radix integer whose order is the rows' order."""
    n = len(columns[0])
    key = np.zeros(n, dtype=np.int64)
    values = []
    radix = 1
    for col in columns:
        uniq, codes = np.unique(col, return_inverse=True)
        values.append(uniq)
        if radix * max(len(uniq), 1) >= 1 << 62:  # too many distinct combinations for one integer
            stacked = np.stack(columns, axis=1) if n else np.zeros((0, len(columns)), np.uint64)
            distinct_rows, inverse = np.unique(stacked, axis=0, return_inverse=True)
            return [tuple(r) for r in distinct_rows.tolist()], inverse.ravel()
        key = key * len(uniq) + codes.ravel()
        radix *= max(len(uniq), 1)
    ukeys, inverse = np.unique(key, return_inverse=True)
    digits = []
    rest = ukeys
    for uniq in reversed(values):
        digits.append(uniq[rest % len(uniq)] if len(uniq) else rest)
        rest = rest // max(len(uniq), 1)
    rows = list(zip(*[d.tolist() for d in reversed(digits)])) if len(ukeys) else []
    return rows, inverse.ravel()


def _exact_sums(inverse: np.ndarray, values: np.ndarray, n: int) -> list[int]:
    """Per-group integer sums without float rounding (bincount sums in float64)."""
    if not len(values):
        return [0] * n
    hi = np.bincount(inverse, weights=(values >> 26).astype(np.float64), minlength=n)
    lo = np.bincount(inverse, weights=(values & ((1 << 26) - 1)).astype(np.float64), minlength=n)
    return [(int(a) << 26) + int(b) for a, b in zip(hi.tolist(), lo.tolist())]


def holder_of(att: Attributed, seqs: list[int], sym: Callable[[int], str], comm: Callable[[int], str]) -> list:
    """:class:`~zlperf.analysis.result.HolderOf` of the waits whose acquisitions are at stream positions
    ``seqs`` (None for a seq that is not one of the attributed waits)."""
    from zlperf.analysis.result import HolderOf

    order = np.argsort(att.waits["seq"], kind="stable")
    sorted_seq = att.waits["seq"][order]
    out: list = []
    for seq in seqs:
        pos = int(np.searchsorted(sorted_seq, seq))
        if pos >= len(sorted_seq) or int(sorted_seq[pos]) != seq:
            out.append(None)
            continue
        i = int(order[pos])
        if not att.traced[i]:
            out.append(HolderOf(caller=NOT_TRACED))
            continue
        r = {k: v[i].item() for k, v in att.holder.items()}
        seen = r["holder_seq"] >= 0
        out.append(HolderOf(caller=sym(r["holder_caller"]) if seen else NO_ACQUISITION, pid=r["pid"],
                            comm=comm(r["pid"]), cpu=r["cpu"], release_ts_ns=r["ts"],
                            hold_ns=r["hold_ns"] if r["hold_ns"] >= 0 else None,
                            count=r["count"] if seen and r["count"] >= 0 else None,
                            waited=bool(r["holder_contended"])))
    return out
