"""Exact distributions: nearest-rank percentiles and log2 histograms against textbook definitions."""

from __future__ import annotations

import math
import pickle

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from zlperf.analysis import stats
from zlperf.analysis.stats import Distribution, DistributionsByCode, log2_bucket, split_small, stats_from_log2


def textbook_percentile(values: list[int], p: float) -> int:
    """The smallest value with at least p% of values <= it."""
    s = sorted(values)
    for v in s:
        if sum(1 for x in s if x <= v) * 100 >= p * len(s):
            return v
    return s[-1]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**63 - 1), min_size=1, max_size=60),
       st.integers(min_value=1, max_value=5))
def test_distribution_matches_textbook(values, pieces):
    d = Distribution()
    for part in np.array_split(np.array(values, dtype=np.uint64), pieces):
        d.add(part)
    s = d.summary()
    assert s["count"] == len(values)
    assert s["sum"] == sum(values)
    assert s["min"] == min(values) and s["max"] == max(values)
    for label, p in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9)):
        assert s[label] == textbook_percentile(values, p), label


@given(st.lists(st.integers(min_value=0, max_value=2**40), min_size=1, max_size=200))
def test_log2_buckets_are_bit_lengths(values):
    buckets = log2_bucket(np.array(values, dtype=np.uint64))
    assert [int(b) for b in buckets] == [v.bit_length() for v in values]


def test_merge_equals_adding_everything():
    rng = np.random.default_rng(7)
    a, b = rng.integers(0, 10**7, 5000), rng.integers(0, 10**9, 70000)
    da, db, both = Distribution(), Distribution(), Distribution()
    da.add(a)
    db.add(b)
    both.add(np.concatenate([a, b]))
    da.merge(db)
    assert da.summary() == both.summary()


def test_percentiles_from_log2_are_bucket_upper_bounds():
    values = np.array([1, 2, 3, 100, 1000, 5000], dtype=np.uint64)
    d = Distribution()
    d.add(values)
    s = d.summary()
    h = stats_from_log2(s["hist_log2"], s["count"], s["sum"], s["min"], s["max"])
    for label in ("p50", "p90", "p99"):
        exact = s[label]
        assert exact <= h[label] <= max(2 * exact, 1), label  # within one log2 bucket
    assert h["percentiles_from"].startswith("log2")
    assert math.isclose(h["mean"], s["mean"])


def test_large_distributions_stay_exact_in_dense_mode():
    """Past the dense threshold small values are bincounted: percentiles, sum and max must not move."""
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.integers(0, 70_000, 300_000), rng.integers(0, 10**9, 3_000)]).astype(np.uint64)
    d = Distribution()
    for part in np.array_split(values, 37):
        d.add(part)
    s = d.summary()
    ordered = np.sort(values)
    assert s["count"] == len(values) and s["sum"] == int(values.astype(object).sum())
    assert s["min"] == int(ordered[0]) and s["max"] == int(ordered[-1])
    for label, per_mille in (("p50", 500), ("p90", 900), ("p99", 990), ("p999", 999)):
        rank = -(-per_mille * len(values) // 1000)  # ceil, in integers (no float rounding)
        assert s[label] == int(ordered[rank - 1]), label


def _exact_table(values: np.ndarray) -> tuple[list[int], list[int]]:
    uniq, counts = np.unique(values, return_counts=True)
    return uniq.tolist(), counts.tolist()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(min_value=1, max_value=3000), st.integers(min_value=1, max_value=24),
                          st.sampled_from([2**10, 2**16, 2**17, 2**40])), min_size=1, max_size=8),
       st.integers(min_value=0, max_value=2**32), st.booleans())
def test_distributions_by_code_equal_one_distribution_a_group(batches, seed, pickled):
    """Rows of (code, value) added batch by batch, with few groups (one bincount of keys), growing past the
    few (each group's own Distribution), values around the 2^16 cap, folded early or carried across a pickle
    (a part sent between processes): each group holds exactly its values."""
    rng = np.random.default_rng(seed)
    by_code = DistributionsByCode()
    expect: dict[int, list[np.ndarray]] = {}
    for i, (n, groups, top) in enumerate(batches):
        codes = rng.integers(0, groups, n).astype(np.int64)
        values = rng.integers(0, top, n).astype(np.uint64)
        values[: n // 7] = 2**16 - 1 + (np.arange(n // 7) % 3).astype(np.uint64)  # either side of the cap
        by_code.grow(groups)
        by_code.add(codes, values, split_small(values) if i % 2 else None)
        for code in range(groups):
            expect.setdefault(code, []).append(values[codes == code])
        if pickled and i == len(batches) // 2:
            by_code = pickle.loads(pickle.dumps(by_code))
    assert len(by_code) == max(g for _n, g, _t in batches)
    for code, dist in enumerate(by_code.groups):
        values = np.concatenate(expect.get(code, [np.empty(0, np.uint64)]))
        assert [v.tolist() for v in dist.table()] == list(_exact_table(values)), code
        assert dist.count == len(values)


def test_distributions_by_code_fold_into_dense_groups(monkeypatch):
    """Many keys between folds (a group past the dense threshold) and a fold of a later code only: the dense
    counts, the large values' table and the summary are those of one Distribution given the same values (the last
    fold's keys start at code 2: counted from there)."""
    monkeypatch.setattr(stats, "_KEYS_FOLD_AT", 60_000)  # two steps a fold
    rng = np.random.default_rng(11)
    by_code, single = DistributionsByCode(), [Distribution(), Distribution(), Distribution()]
    by_code.grow(3)
    for step in range(12):
        n = 30_000
        codes = np.full(n, 2, np.int64) if step >= 10 else rng.integers(0, 2, n).astype(np.int64)
        values = np.where(rng.random(n) < 0.01, rng.integers(2**16, 10**9, n), rng.integers(0, 5000, n))
        values = values.astype(np.uint64)
        by_code.add(codes, values)
        for code in range(3):
            single[code].add(values[codes == code])
    for code in range(3):
        assert by_code.groups[code].summary() == single[code].summary(), code
