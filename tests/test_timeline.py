"""The binned timeline (zlperf.analysis.timeline): rows placed once can be summed again for other columns of the
same rows (the holds of a chunk are its acquisitions' rows) with the very sums a fresh binning gives."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from zlperf.analysis.timeline import Timeline

ZONES, CALLERS = [10, 11, 12], [0xA, 0xB, 0xC, 0xD]


def _groupings(zone: np.ndarray, caller: np.ndarray) -> list:
    return [("all", None, [0]), ("zone", zone, ZONES), ("caller", caller, CALLERS)]


def _rows(draw, n: int, lo: int, hi: int):
    ts = np.array(draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n)), dtype=np.uint64)
    zone = np.array(draw(st.lists(st.integers(0, len(ZONES) - 1), min_size=n, max_size=n)), dtype=np.int32)
    caller = np.array(draw(st.lists(st.integers(0, len(CALLERS) - 1), min_size=n, max_size=n)), dtype=np.int32)
    weights = np.array(draw(st.lists(st.integers(0, 10**9), min_size=n, max_size=n)), dtype=np.int64)
    return ts, zone, caller, weights


def _same(a: Timeline, b: Timeline) -> None:
    assert (a.bin_ns, a.lo, a.n) == (b.bin_ns, b.lo, b.n)
    assert list(a.series) == list(b.series)  # the same series, made in the same order
    for key in a.series:
        assert np.array_equal(a.series[key], b.series[key]), key


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_reused_cells_give_the_sums_of_a_fresh_binning(data):
    """Acquisitions binned, then holds = k earlier rows + the acquisitions' first m rows, summed from the
    acquisitions' cells: the same series as binning the holds afresh, whether the k rows fall inside the
    acquisitions' bins, outside them (binned afresh then), or the axis coarsened in between (ditto)."""
    draw = data.draw
    max_bins = draw(st.sampled_from([8, 64, 4096]))
    n = draw(st.integers(1, 60))
    ts, zone, caller, weights = _rows(draw, n, 10_000, 10_000 + draw(st.integers(0, 400_000)))
    k = draw(st.integers(0, 3))
    carried = _rows(draw, k, 0, 10_000 + 500_000)  # earlier acquisitions: inside the chunk's bins or not
    m = draw(st.integers(0, n))
    between = draw(st.booleans())  # other rows far away between the two adds: the axis may coarsen
    far = np.array([900_000_000], dtype=np.uint64)

    holds = [np.concatenate([c[:k], r[:m]]) for c, r in zip(carried, (ts, zone, caller, weights))]
    lines = []
    for reuse in (False, True):
        tl = Timeline(bin_ns=1000, max_bins=max_bins)
        cells = tl.add(ts, _groupings(zone, caller), [(1, None)])
        if between:
            tl.add(far, [("all", None, [0])], [(0, None)])
        if len(holds[0]):
            tl.add(holds[0], _groupings(holds[1], holds[2]), [(4, None), (5, holds[3])],
                   (cells, k) if reuse else None)
        lines.append(tl)
    _same(*lines)


def test_rows_just_outside_the_reused_bins_are_binned_afresh():
    """The edges: an earlier row in the bin before the acquisitions' first, or the bin after their last."""
    ts = np.array([10_000, 11_500, 12_999], dtype=np.uint64)  # bins 10..12 of 1000 ns
    zone, caller = np.array([0, 1, 2], np.int32), np.array([1, 2, 3], np.int32)
    for edge in (9_999, 10_000, 12_999, 13_000):
        holds_ts = np.concatenate([np.array([edge], np.uint64), ts])
        hz, hc = np.concatenate([[2], zone]).astype(np.int32), np.concatenate([[0], caller]).astype(np.int32)
        lines = []
        for reuse in (False, True):
            tl = Timeline(bin_ns=1000)
            cells = tl.add(ts, _groupings(zone, caller), [(1, None)])
            tl.add(holds_ts, _groupings(hz, hc), [(4, None), (5, holds_ts.astype(np.int64))], (cells, 1) if reuse else None)
            lines.append(tl)
        _same(*lines)
