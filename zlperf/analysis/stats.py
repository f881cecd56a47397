"""Exact distributions of nanosecond durations: nearest-rank percentiles, log2 and log-linear histograms.

Values are kept as a (value, count) table that is compacted as it grows, so millions of
hold times cost memory in proportion to their *distinct* values, and percentiles stay exact.
Every summary also carries a log-linear histogram (values with their 7 most significant bits kept),
which documents from many hosts merge into percentiles within :data:`LOGLINEAR_RELATIVE_ERROR`.
"""

from __future__ import annotations

__all__ = [
    "PERCENTILES",
    "LOGLINEAR_BITS",
    "LOGLINEAR_RELATIVE_ERROR",
    "Distribution",
    "DistributionsByCode",
    "split_small",
    "log2_bucket",
    "log2_histogram",
    "loglinear_low",
    "loglinear_histogram",
    "stats_from_loglinear",
    "nearest_rank",
    "stats_from_log2",
    "empty_stats",
]

from fractions import Fraction
from typing import Iterable, Optional

import numpy as np

from zlperf.analysis.grouping import split_by_code

#: The percentiles every report shows, as (label, percent).
PERCENTILES: tuple[tuple[str, Fraction], ...] = (
    ("p50", Fraction(50)),
    ("p90", Fraction(90)),
    ("p99", Fraction(99)),
    ("p999", Fraction(999, 10)),
)

#: Significant bits a log-linear bucket keeps: values below 2^7 have a bucket each; above, each power of two
#: is cut into 64 buckets of equal width.
LOGLINEAR_BITS = 7
#: A percentile read from a log-linear histogram (the middle of the bucket holding the nearest-rank value) is
#: within this fraction of the exact one: half a bucket width over the bucket's lower bound, 2^-7 = 0.78%.
LOGLINEAR_RELATIVE_ERROR = 2.0 ** -LOGLINEAR_BITS
_LOGLINEAR_FROM = "log-linear histogram (merged; relative error < 0.79%)"

_COMPACT_AT = 1 << 16  # pending raw values before folding them into the table
_DENSE_AFTER = 1 << 16  # values held before small ones are counted densely
_DENSE_LIMIT = np.uint64(1 << 16)  # values below this many ns are counted densely (512 KiB per distribution)
_DENSE_FOLD_AT = 1 << 16  # pending values (512 KiB) of a dense distribution before they are counted
#: Groups few enough for one bincount of (group, small value) keys: its table is this many x 2^16 counters (8 MB).
_GROUPS_AT_ONCE = 16
_KEY_STRIDE = int(_DENSE_LIMIT) + 1  # a key is code * stride + min(value, 2^16); the last column: large values
_KEYS_FOLD_AT = 1 << 17  # pending keys (1 MB) before they are counted


def nearest_rank(n: int, percent: Fraction) -> int:
    """1-based rank of the p-th percentile by nearest rank: ceil(p/100 * n), at least 1."""
    num = percent.numerator * n
    den = percent.denominator * 100
    return max(1, -(-num // den))


def log2_bucket(values: np.ndarray) -> np.ndarray:
    """bcc-style log2 bucket index: 0 for 0, else bit length (1 -> 1, 2..3 -> 2, 4..7 -> 3)."""
    v = np.asarray(values, dtype=np.uint64)
    # frexp's exponent is the bit length (and 0 for 0), exact for integers below 2**53; larger ns values
    # (> 104 days) cannot occur.
    return np.frexp(v.astype(np.float64))[1].astype(np.int64)


def log2_histogram(values: np.ndarray, counts: Optional[np.ndarray] = None,
                   buckets: Optional[np.ndarray] = None) -> list[int]:
    """Counts per log2 bucket (index as :func:`log2_bucket`, given as ``buckets`` when known), trailing empty
    buckets dropped."""
    if len(values) == 0:
        return []
    buckets = log2_bucket(values) if buckets is None else buckets
    hist = np.bincount(buckets, weights=counts, minlength=1)
    return np.trim_zeros(hist.astype(np.int64), "b").tolist()


def loglinear_low(values: np.ndarray, buckets: Optional[np.ndarray] = None) -> np.ndarray:
    """Lower bound of each value's log-linear bucket: the value with all but its
    :data:`LOGLINEAR_BITS` most significant bits cleared (values below 2^7 are their own bucket).
    ``buckets``: the values' :func:`log2_bucket`, when known."""
    v = np.asarray(values, dtype=np.uint64)
    shift = np.maximum((log2_bucket(v) if buckets is None else buckets) - LOGLINEAR_BITS, 0).astype(np.uint64)
    return (v >> shift) << shift


def loglinear_histogram(values: np.ndarray, counts: np.ndarray,
                        buckets: Optional[np.ndarray] = None) -> list[list[int]]:
    """``[[bucket lower bound, count], ...]`` in increasing order, of sorted distinct ``values`` (``buckets``:
    their :func:`log2_bucket`, when known)."""
    if len(values) == 0:
        return []
    lows = loglinear_low(values, buckets)
    starts = np.flatnonzero(np.r_[True, lows[1:] != lows[:-1]])
    sums = np.add.reduceat(np.asarray(counts, dtype=np.int64), starts)
    return list(map(list, zip(lows[starts].tolist(), sums.tolist())))  # tolist: Python ints already


def _loglinear_mid(low: int) -> int:
    """The middle of the bucket whose lower bound is ``low`` (the value itself for exact buckets)."""
    width = 1 << max(low.bit_length() - LOGLINEAR_BITS, 0)
    return low + width // 2


class Distribution:
    """An exact multiset of non-negative integer durations (ns).

    Small distributions keep a sorted (value, count) table, compacted as values arrive.
    Once a distribution is large, values below :data:`_DENSE_LIMIT` ns (most lock holds and
    waits) are counted in a dense array with bincount instead — no sorting on the hot path —
    and only the rarer larger values go through the table. Either way nothing is rounded.
    """

    __slots__ = ("_values", "_counts", "_pending", "_pending_len", "_dense", "_table")

    def __init__(self) -> None:
        self._values = np.empty(0, dtype=np.uint64)
        self._counts = np.empty(0, dtype=np.int64)
        self._pending: list[np.ndarray] = []
        self._pending_len = 0
        self._dense: Optional[np.ndarray] = None  # counts of values 0.._DENSE_LIMIT-1, once large
        self._table: Optional[tuple[np.ndarray, np.ndarray]] = None  # table() until the values change

    def add(self, values: np.ndarray) -> None:
        """Add a batch of values."""
        if not len(values):
            return
        self._pending.append(np.asarray(values, dtype=np.uint64))
        self._pending_len += len(values)
        # Dense counting costs a pass over all _DENSE_LIMIT counters per fold: fold dense batches less often.
        if self._pending_len >= (_COMPACT_AT if self._dense is None else _DENSE_FOLD_AT):
            if self._dense is None and int(self._counts.sum()) + self._pending_len >= _DENSE_AFTER:
                self._go_dense()
            self._compact()

    def add_counts(self, dense: np.ndarray) -> None:
        """Add ``dense[v]`` values ``v`` for every ``v`` below ``_DENSE_LIMIT`` (``dense``: int64 counts)."""
        self._table = None
        if self._dense is None:
            if int(dense.sum()) + int(self._counts.sum()) + self._pending_len < _DENSE_AFTER:
                present = np.flatnonzero(dense)
                self._fold(present.astype(np.uint64), dense[present])
                return
            self._go_dense()
        self._dense += dense  # type: ignore[operator]

    def _go_dense(self) -> None:
        """Count small values densely from now on, starting with those held (no sort needed)."""
        self._table = None
        self._dense = np.zeros(int(_DENSE_LIMIT), dtype=np.int64)
        small = self._values < _DENSE_LIMIT
        self._dense[self._values[small].astype(np.int64)] = self._counts[small]
        self._values, self._counts = self._values[~small], self._counts[~small]
        raw = np.concatenate(self._pending) if self._pending else np.empty(0, np.uint64)
        small = raw < _DENSE_LIMIT
        self._dense += np.bincount(raw[small].astype(np.int64), minlength=int(_DENSE_LIMIT))
        rest = raw[~small]
        self._pending, self._pending_len = ([rest], len(rest)) if len(rest) else ([], 0)

    def __getstate__(self) -> tuple:
        # Sent between processes (parts of a recording): folded, and the dense counts as (value, count) pairs.
        self._compact()
        dense = None
        if self._dense is not None:
            present = np.flatnonzero(self._dense)
            dense = (present.astype(np.int32), self._dense[present])
        return self._values, self._counts, dense

    def __setstate__(self, state: tuple) -> None:
        self._values, self._counts, dense = state
        self._pending, self._pending_len, self._table = [], 0, None
        self._dense = None
        if dense is not None:
            self._dense = np.zeros(int(_DENSE_LIMIT), dtype=np.int64)
            self._dense[dense[0]] = dense[1]

    def _empty(self) -> bool:
        return not (len(self._values) or self._pending or self._dense is not None)

    def merge(self, other: "Distribution") -> None:
        """Add every value of ``other``."""
        self._table = None
        if self._empty():  # the common case when parts of a recording merge: take its tables as they are
            other._compact()
            self._values, self._counts = other._values.copy(), other._counts.copy()
            self._dense = None if other._dense is None else other._dense.copy()
            return
        if other._dense is not None:  # dense counts add; the table holds only values past the dense range
            other._compact()
            self._compact()
            if self._dense is None:
                self._go_dense()
            self._dense += other._dense
            self._fold(other._values, other._counts)
            return
        values, counts = other.table()
        self._compact()
        self._fold(values, counts)
        if self._dense is not None:
            small = self._values < _DENSE_LIMIT
            self._dense[self._values[small].astype(np.int64)] += self._counts[small]
            self._values, self._counts = self._values[~small], self._counts[~small]

    def _fold(self, values: np.ndarray, counts: np.ndarray) -> None:
        self._table = None
        allv = np.concatenate([self._values, values])
        allc = np.concatenate([self._counts, counts])
        uniq, inverse = np.unique(allv, return_inverse=True)
        self._values = uniq
        self._counts = np.bincount(inverse.ravel(), weights=allc, minlength=len(uniq)).astype(np.int64)

    def _compact(self) -> None:
        if not self._pending:
            return
        self._table = None
        raw = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending, self._pending_len = [], 0
        if self._dense is not None:
            if int(raw.max()) < _DENSE_LIMIT:  # the usual batch: all small, no split (values < 2^16: int64 bits)
                self._dense += np.bincount(raw.view(np.int64), minlength=int(_DENSE_LIMIT))
                return
            # Large values counted in one bin past the dense range (dropped), then kept for the table: one pass
            # less than selecting the small ones.
            limit = int(_DENSE_LIMIT)
            self._dense += np.bincount(np.minimum(raw, _DENSE_LIMIT).view(np.int64), minlength=limit + 1)[:limit]
            raw = raw[raw >= _DENSE_LIMIT]
        uniq, counts = np.unique(raw, return_counts=True)
        if len(self._values):
            self._fold(uniq, counts.astype(np.int64))
        else:
            self._values, self._counts = uniq, counts.astype(np.int64)

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """Sorted distinct values and their counts."""
        self._compact()
        if self._dense is None:
            return self._values, self._counts
        if self._table is None:  # asked for several times per report (count, total, summary): made once
            present = np.flatnonzero(self._dense)
            # Dense values are all below _DENSE_LIMIT and the table's all at or above it: already in order.
            self._table = (np.concatenate([present.astype(np.uint64), self._values]),
                           np.concatenate([self._dense[present], self._counts]))
        return self._table

    @property
    def count(self) -> int:
        """Number of values."""
        return int(self.table()[1].sum())

    @property
    def total(self) -> int:
        """Exact sum of the values."""
        values, counts = self.table()
        # Exact integer sum without int64 overflow: add the high and low 32-bit halves apart.
        hi = (values >> np.uint64(32)).astype(np.int64)
        lo = (values & np.uint64(0xFFFFFFFF)).astype(np.int64)
        return (int((hi * counts).sum()) << 32) + int((lo * counts).sum())

    def summary(self) -> Optional[dict]:
        """STATS dict (count, sum, min, max, mean, p50, p90, p99, p999, hist_log2), or None if empty.

        Percentiles are exact, by nearest rank.
        """
        values, counts = self.table()
        n = int(counts.sum())
        if n == 0:
            return None
        cum = np.cumsum(counts)
        total = self.total
        out: dict = {
            "count": n,
            "sum": total,
            "min": int(values[0]),
            "max": int(values[-1]),
            "mean": total / n,
        }
        for label, pct in PERCENTILES:
            rank = nearest_rank(n, pct)
            out[label] = int(values[int(np.searchsorted(cum, rank))])
        buckets = log2_bucket(values)  # once for both histograms
        out["hist_log2"] = log2_histogram(values, counts, buckets)
        out["hist_loglinear"] = loglinear_histogram(values, counts, buckets)
        out["percentiles_from"] = "exact"
        return out


def split_small(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (uint64) for :meth:`DistributionsByCode.add`: each capped at 2^16 (int64), and where the
    larger ones are. Made once for the several groupings of the same values."""
    v = np.asarray(values, dtype=np.uint64)
    return np.minimum(v, _DENSE_LIMIT).view(np.int64), np.flatnonzero(v >= _DENSE_LIMIT)


class DistributionsByCode:
    """The exact distributions of groups numbered 0, 1, ... (dense codes), filled together from rows of
    (code, value).

    While the groups are few, a row's code and its value (capped at 2^16 ns, which most holds and waits are
    below) make one key, and a batch of keys is counted with one bincount for all groups: the rows are
    never split by group. The larger values, and all values once there are many groups, go to their
    group's :class:`Distribution` row by row. Either way every value is kept exactly.
    """

    __slots__ = ("_groups", "_keys", "_pending")

    def __init__(self) -> None:
        self._groups: list[Distribution] = []
        self._keys: list[np.ndarray] = []  # keys not yet counted
        self._pending = 0

    def grow(self, n: int) -> None:
        """Room for codes up to ``n - 1``."""
        self._groups.extend(Distribution() for _ in range(n - len(self._groups)))

    def __len__(self) -> int:
        return len(self._groups)

    @property
    def groups(self) -> list[Distribution]:
        """Each code's distribution, every value added so far in it."""
        self._count_keys()
        return self._groups

    def add(self, codes: np.ndarray, values: np.ndarray,
            small: Optional[tuple[np.ndarray, np.ndarray]] = None) -> None:
        """Add ``values[i]`` (uint64) to the distribution of ``codes[i]`` (int64, below ``len(self)``);
        ``small``: :func:`split_small` of ``values``, when made already."""
        n = len(self._groups)
        if n > _GROUPS_AT_ONCE:
            for code, idx in split_by_code(codes, n):
                self._groups[code].add(values[idx])
            return
        capped, large = small if small is not None else split_small(values)
        self._keys.append(codes * _KEY_STRIDE + capped)
        self._pending += len(codes)
        if len(large):  # counted in the keys' last column, which is dropped: their group's table keeps them
            big = values[large]
            for code, idx in split_by_code(codes[large], n):
                self._groups[code].add(big[idx])
        if self._pending >= _KEYS_FOLD_AT:
            self._count_keys()

    def _count_keys(self) -> None:
        if not self._keys:
            return
        keys = np.concatenate(self._keys) if len(self._keys) > 1 else self._keys[0]
        self._keys, self._pending = [], 0
        # The codes a batch holds are usually a few neighbours (a chunk is one CPU's): counted from the first.
        first = int(keys.min()) // _KEY_STRIDE
        n = int(keys.max()) // _KEY_STRIDE + 1 - first
        if first:
            keys -= first * _KEY_STRIDE
        counts = np.bincount(keys, minlength=n * _KEY_STRIDE).reshape(n, _KEY_STRIDE)
        for code in np.flatnonzero(counts[:, :-1].any(axis=1)).tolist():
            self._groups[first + code].add_counts(counts[code, :-1])

    def __getstate__(self) -> list:
        return self.groups

    def __setstate__(self, state: list) -> None:
        self._groups, self._keys, self._pending = state, [], 0


def empty_stats() -> dict:
    """STATS of an empty distribution: count 0, the rest null (seen none, as opposed to cannot tell)."""
    out: dict = {"count": 0, "sum": 0, "min": None, "max": None, "mean": None}
    out.update({label: None for label, _ in PERCENTILES})
    out["hist_log2"] = []
    out["hist_loglinear"] = []
    out["percentiles_from"] = "exact"
    return out


def stats_from_log2(hist: Iterable[int], count: int, total: int, vmin: int, vmax: int) -> dict:
    """STATS from a merged log2 histogram: percentiles are bucket upper bounds (clamped to max)."""
    hist = [int(x) for x in hist]
    out: dict = {"count": count, "sum": total, "min": vmin, "max": vmax, "mean": (total / count) if count else 0.0}
    cum = np.cumsum(hist) if hist else np.zeros(1, dtype=np.int64)
    for label, pct in PERCENTILES:
        rank = nearest_rank(count, pct)
        idx = int(np.searchsorted(cum, rank))
        upper = 0 if idx == 0 else (1 << idx) - 1
        out[label] = int(min(max(upper, vmin), vmax))
    out["hist_log2"] = hist
    out["percentiles_from"] = "log2 histogram (upper bucket bound)"
    return out


def stats_from_loglinear(hist: Iterable, count: int, total: int, vmin: int, vmax: int,
                         hist_log2: Iterable[int]) -> dict:
    """STATS from a merged log-linear histogram (``[[lower bound, count], ...]``, increasing): each
    percentile is the middle of the bucket holding its nearest-rank value, clamped to [min, max], so
    within :data:`LOGLINEAR_RELATIVE_ERROR` of the exact value."""
    pairs = [(int(lo), int(c)) for lo, c in hist]
    out: dict = {"count": count, "sum": total, "min": vmin, "max": vmax, "mean": (total / count) if count else 0.0}
    cum = np.cumsum([c for _, c in pairs], dtype=np.int64) if pairs else np.zeros(1, dtype=np.int64)
    for label, pct in PERCENTILES:
        idx = min(int(np.searchsorted(cum, nearest_rank(count, pct))), len(pairs) - 1)
        out[label] = int(min(max(_loglinear_mid(pairs[idx][0]), vmin), vmax))
    out["hist_log2"] = [int(x) for x in hist_log2]
    out["hist_loglinear"] = [[lo, c] for lo, c in pairs]
    out["percentiles_from"] = _LOGLINEAR_FROM
    return out
