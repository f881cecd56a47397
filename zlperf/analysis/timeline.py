"""Counters per time bin, for the whole recording and per zone and caller.

Kept as dense numpy arrays that all share one bin width. When the recording outgrows
:attr:`Timeline.max_bins`, the width doubles (neighbouring bins are summed), so memory stays
bounded however long the trace, and every update is a vectorised bincount. The number of
per-group series is bounded too (:attr:`Timeline.max_series`): a damaged file can hold any
number of distinct callers, and each series costs max_bins x columns floats.
"""

from __future__ import annotations

__all__ = ["Timeline", "Cells", "COLUMNS", "ALWAYS_TRACKED", "MAX_BINS", "MAX_SERIES", "final_bin_ns", "rebin_factor"]

from dataclasses import dataclass
from typing import Callable, Hashable, Optional

import numpy as np

#: Counters kept per bin, in this order.
COLUMNS = ("contended_events", "acquisitions", "waits", "wait_sum_ns", "holds", "hold_sum_ns")
#: Series dimensions never left untracked: the whole recording, and its waits per log2 bucket (the latency
#: heatmap: series ("wait_log2", bucket), counted in the "waits" column; at most 65 buckets).
ALWAYS_TRACKED = ("all", "wait_log2")
MAX_BINS = 4096  #: bins kept before the width doubles
MAX_SERIES = 128  #: zone and caller series kept besides the ALWAYS_TRACKED ones


def final_bin_ns(first_ts: int, last_ts: int, bin_ns: int, max_bins: int = MAX_BINS) -> int:
    """The width a :class:`Timeline` ends with once rows at ``first_ts`` and ``last_ts`` (the extremes it
    was given) are in: ``bin_ns`` doubled until the span fits ``max_bins`` bins. Doubling floors the bin
    indices (``(t // w) // 2 == t // 2w``), so the order rows came in does not matter."""
    width = bin_ns
    while last_ts // width - first_ts // width + 1 > max_bins:
        width *= 2
    return width


def rebin_factor(span_bins: int, bins: int) -> int:
    """The round factor (1, 2, 5 x 10^k) that cuts ``span_bins`` fine bins into about ``bins`` bins."""
    need = max(1, -(-span_bins // bins))
    return next(m * 10**e for e in range(0, 12) for m in (1, 2, 5) if m * 10**e >= need)


@dataclass
class Cells:
    """Rows placed on a :class:`Timeline`'s axis: each row's cell per grouping (``code * span + bin``, the bin
    counted from ``first``; the bin alone for a grouping without codes), for axis bins of ``bin_ns``. Other
    columns of the same rows, or of their first rows, are summed from them while the axis keeps its width."""

    bin_ns: int
    first: int  #: the rows' earliest bin (absolute, in bins of bin_ns)
    span: int  #: bins from first to the latest
    flat: list[np.ndarray]  #: per grouping, each row's cell


class Timeline:
    """Dense per-bin counters for several series (keys) over one shared time axis."""

    def __init__(self, bin_ns: int = 1_000_000, max_bins: int = MAX_BINS, max_series: int = MAX_SERIES):
        self.bin_ns = bin_ns
        self.max_bins = max_bins
        self.max_series = max_series  #: series kept besides "all"; later keys are not tracked
        self.untracked: set = set()  #: keys seen once the limit was reached
        self.lo: Optional[int] = None  #: index (in bin_ns units) of the first bin kept
        self.n = 0  #: bins kept
        self.series: dict[Hashable, np.ndarray] = {}  #: key -> (n, len(COLUMNS)) float64

    def _cover(self, lo: int, hi: int) -> None:
        """Make the axis include bins lo..hi (absolute, in current units), coarsening if needed."""
        if self.lo is None:
            self.lo, self.n = lo, 0
        new_lo, new_hi = min(self.lo, lo), max(self.lo + self.n - 1, hi)
        while new_hi - new_lo + 1 > self.max_bins:
            self._coarsen()
            lo, hi = lo // 2, hi // 2
            new_lo, new_hi = min(self.lo, lo), max(self.lo + self.n - 1, hi)
        if new_lo == self.lo and new_hi - new_lo + 1 == self.n:
            return
        front, size = self.lo - new_lo, new_hi - new_lo + 1
        for key, data in self.series.items():
            grown = np.zeros((size, len(COLUMNS)))
            grown[front:front + self.n] = data
            self.series[key] = grown
        self.lo, self.n = new_lo, size

    def _coarsen(self) -> None:
        """Double the bin width: bins 2k and 2k+1 become bin k."""
        assert self.lo is not None  # an axis with bins
        new_lo = self.lo // 2
        new_hi = (self.lo + self.n - 1) // 2
        size = new_hi - new_lo + 1
        front = self.lo - 2 * new_lo  # 1 when the first bin is the second of its pair
        for key, data in self.series.items():
            pairs = np.zeros((2 * size, len(COLUMNS)))
            pairs[front:front + self.n] = data
            self.series[key] = pairs.reshape(size, 2, len(COLUMNS)).sum(axis=1)
        self.bin_ns *= 2
        self.lo, self.n = new_lo, size

    def add(self, ts: np.ndarray, groupings: list, columns: list,
            reuse: Optional[tuple["Cells", int]] = None) -> "Cells":
        """Add rows into several series at once, with one time-binning of the rows; returns the rows' cells.

        ``groupings``: ``(dim, codes, keys)`` items; row i goes to series ``(dim, keys[codes[i]])``
        (``codes`` None: every row to ``(dim, keys[0])``). ``columns``: ``(column, weights)``
        items; each row adds one (weights None) or its weight to that column.
        ``reuse``: ``(cells, k)`` when rows ``k..`` are the first rows of an earlier call's (same groupings, same
        codes): their cells are taken from it, only the ``k`` rows before them are binned.
        """
        if len(ts) == 0:
            return Cells(self.bin_ns, 0, 0, [np.empty(0, np.int64) for _ in groupings])
        cells = self._reused(ts, groupings, *reuse) if reuse is not None else None
        if cells is None:
            cells = self._place(ts, groupings)
        self._sum(cells, groupings, columns)
        return cells

    def _place(self, ts: np.ndarray, groupings: list) -> "Cells":
        """Each row's bin on the axis (grown to hold them) and, per grouping, its (code, bin) cell."""
        bins = (ts // np.uint64(self.bin_ns)).astype(np.int64)
        lo, hi = int(bins.min()), int(bins.max())
        width = self.bin_ns
        self._cover(lo, hi)
        if self.bin_ns != width:  # the axis coarsened: bin again (doubling floors bin indices)
            bins = (ts // np.uint64(self.bin_ns)).astype(np.int64)
            lo, hi = lo // (self.bin_ns // width), hi // (self.bin_ns // width)
        # Sums over the rows' own bins only (a chunk spans a few of the axis's bins), then added in place.
        bins -= lo
        span = hi - lo + 1
        return Cells(self.bin_ns, lo, span, [bins if codes is None else codes * span + bins
                                             for _dim, codes, _keys in groupings])

    def _reused(self, ts: np.ndarray, groupings: list, cells: "Cells", k: int) -> Optional["Cells"]:
        """:meth:`_place` of rows whose ``k..`` are ``cells``' first rows; None when the axis changed width
        since or the first ``k`` rows fall outside ``cells``' bins."""
        if cells.bin_ns != self.bin_ns or len(ts) - k > len(cells.flat[0]):
            return None
        head = (ts[:k] // np.uint64(self.bin_ns)).astype(np.int64) - cells.first
        if k and (int(head.min()) < 0 or int(head.max()) >= cells.span):
            return None
        m = len(ts) - k
        flat = []
        for (_dim, codes, _keys), theirs in zip(groupings, cells.flat):
            mine = head if codes is None else codes[:k] * cells.span + head
            flat.append(np.concatenate([mine, theirs[:m]]) if k else theirs[:m])
        return Cells(cells.bin_ns, cells.first, cells.span, flat)

    def _sum(self, cells: "Cells", groupings: list, columns: list) -> None:
        """Add the rows placed in ``cells`` into the series (see :meth:`add`)."""
        span, at = cells.span, cells.first - self.lo  # type: ignore[operator]
        columns = [(column, None if weights is None else weights.astype(np.float64)) for column, weights in columns]
        # Every row has one code in each grouping, so a grouping without codes (the whole recording) is any
        # grouping's sums added up: no bincount over the rows for it.
        grouped: dict[int, np.ndarray] = {}
        summed: dict[tuple[int, int], np.ndarray] = {}
        for i, (_dim, codes, keys) in sorted(enumerate(groupings), key=lambda g: g[1][1] is None):
            n_codes = 1 if codes is None else len(keys)
            for column, w in columns:
                if codes is None and column in grouped:
                    summed[i, column] = grouped[column].sum(axis=0, keepdims=True)
                    continue
                sums = np.bincount(cells.flat[i], weights=w, minlength=n_codes * span)[: n_codes * span]
                summed[i, column] = sums = sums.reshape(n_codes, span)
                grouped.setdefault(column, sums)
        for i, (dim, _codes, keys) in enumerate(groupings):  # series made in the order given
            for column, _w in columns:
                sums = summed[i, column]
                for code in np.flatnonzero(sums.any(axis=1)):
                    key = (dim, keys[code])
                    data = self.series.get(key)
                    if data is None:
                        if dim not in ALWAYS_TRACKED and len(self.series) > self.max_series:
                            self.untracked.add(key)
                            continue
                        data = self.series[key] = np.zeros((self.n, len(COLUMNS)))
                    data[at:at + span, column] += sums[code]

    def absorb(self, other: "Timeline", rename: Callable[[Hashable], Hashable]) -> None:
        """Add ``other``'s series (keys renamed by ``rename``), on one axis with this one's.

        Both widths are the first width doubled, and doubling floors bin indices, so the sums are the ones
        a single timeline given all rows would hold (integer counters and ns sums, exact in float64).
        ``other`` is coarsened in place.
        """
        self.untracked |= {rename(k) for k in other.untracked}
        if other.lo is None:
            return
        while other.bin_ns < self.bin_ns:
            other._coarsen()
        while self.bin_ns < other.bin_ns:
            if self.lo is None:
                self.bin_ns *= 2
            else:
                self._coarsen()
        self._cover(other.lo, other.lo + other.n - 1)
        while other.bin_ns < self.bin_ns:  # covering both may have coarsened this one
            other._coarsen()
        assert self.lo is not None
        at = other.lo - self.lo
        for key, data in other.series.items():
            key = rename(key)
            mine = self.series.get(key)
            if mine is None:
                if tuple(key)[0] not in ALWAYS_TRACKED and len(self.series) > self.max_series:  # type: ignore[arg-type]
                    self.untracked.add(key)
                    continue
                mine = self.series[key] = np.zeros((self.n, len(COLUMNS)))
            mine[at:at + other.n] += data

    def rebinned(self, key: Hashable, first_ts: int, last_ts: int, bins: int) -> tuple[int, int, np.ndarray]:
        """(start_ns, width_ns, counters) of ``key`` over [first_ts, last_ts] in about ``bins`` round bins."""
        lo_bin, hi_bin = first_ts // self.bin_ns, last_ts // self.bin_ns
        span = hi_bin - lo_bin + 1
        factor = rebin_factor(span, bins)
        out_n = -(-span // factor)
        out = np.zeros((out_n, len(COLUMNS)))
        data = self.series.get(key)
        if data is not None and self.lo is not None:
            absolute = np.arange(self.n) + self.lo
            inside = (absolute >= lo_bin) & (absolute <= hi_bin)
            np.add.at(out, (absolute[inside] - lo_bin) // factor, data[inside])
        return int(lo_bin * self.bin_ns), int(self.bin_ns * factor), out

    def slices(self, key: Hashable, first_ts: int, last_ts: int, k: int) -> Optional[np.ndarray]:
        """Counters of ``key`` summed over ``k`` equal time slices of [first_ts, last_ts] (None: not tracked)."""
        if key in self.untracked:
            return None
        out = np.zeros((k, len(COLUMNS)))
        data = self.series.get(key)
        if data is None or self.lo is None:
            return out
        centres = (np.arange(self.n) + self.lo + 0.5) * self.bin_ns
        span = max(1, last_ts - first_ts)
        which = np.floor((centres - first_ts) * k / span).astype(np.int64)
        inside = (which >= 0) & (which < k)
        np.add.at(out, which[inside], data[inside])
        return out
