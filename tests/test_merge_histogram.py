"""zlperf merge's percentiles come from a mergeable log-linear histogram: within 0.79% of the pooled exact value.

Checked against tests/fleet_truth.py (every value of every file pooled from `trace-cmd report` / `perf script`
text) on real recordings, each merged as a JSON document the way `zlperf merge` reads them.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

import fleet_truth
from conftest import FULL_DAT, FULL_PERF_DATA, FULL_PERF_KALLSYMS, FULL_V6_DAT, requires_perf, requires_trace_cmd
from zlperf.analysis import analyze
from zlperf.analysis.stats import (
    LOGLINEAR_RELATIVE_ERROR, PERCENTILES, Distribution, loglinear_low, nearest_rank, stats_from_loglinear)
from zlperf.errors import ZlperfError
from zlperf.readers import open_trace
from zlperf.report import build_document, merge_results, result_from_document

FILES = [(FULL_DAT, None), (FULL_V6_DAT, None), (FULL_PERF_DATA, FULL_PERF_KALLSYMS)]


def _doc(path) -> dict:
    with open_trace(str(path)) as reader:
        return json.loads(json.dumps(build_document(analyze(reader))))  # as a file would carry it


@pytest.fixture(scope="module")
def merged_and_truth():
    names = [p.name for p, _ in FILES]
    results = [result_from_document(_doc(p), n, n) for (p, _), n in zip(FILES, names)]
    return build_document(merge_results(results, names)), fleet_truth.pooled(FILES)


def _close(got: dict, want: dict, where: str) -> None:
    for k in ("count", "sum", "min", "max"):
        assert got[k] == want[k], (where, k, got[k], want[k])
    for k in ("p50", "p90", "p99"):
        assert abs(got[k] - want[k]) <= LOGLINEAR_RELATIVE_ERROR * want[k], (where, k, got[k], want[k])


@requires_trace_cmd
@requires_perf
def test_merged_percentiles_are_within_the_stated_error_of_the_pooled_values(merged_and_truth):
    doc, want = merged_and_truth
    assert "log-linear" in doc["percentiles_note"] and "0.79%" in doc["percentiles_note"]
    _close(doc["totals"]["wait_ns"], want["totals"]["wait_ns"], "totals wait")
    _close(doc["totals"]["hold_ns"], want["totals"]["hold_ns"], "totals hold")
    assert doc["totals"]["hold_ns"]["percentiles_from"].startswith("log-linear histogram")
    for z in doc["zones"]:
        for s in ("wait_ns", "hold_ns"):
            _close(z[s], want["zones"][z["label"]][s], f"zone {z['label']} {s}")
    for c in doc["callers"]:
        if c["role"] == "lock":
            for s in ("wait_ns", "hold_ns"):
                _close(c[s], want["callers"][c["caller"]][s], f"caller {c['caller']} {s}")


@requires_trace_cmd
@requires_perf
def test_log2_upper_bounds_were_off_by_far_more(merged_and_truth):
    """The old answer (log2 bucket upper bound) for the same merge, to show what the histogram fixed."""
    doc, want = merged_and_truth
    worst_log2 = worst_now = 0.0
    for s in ("wait_ns", "hold_ns"):
        got = doc["totals"][s]
        cum = np.cumsum(got["hist_log2"])
        for label, pct in PERCENTILES[:3]:
            exact = want["totals"][s][label]
            upper = min((1 << int(np.searchsorted(cum, nearest_rank(got["count"], pct)))) - 1, got["max"])
            worst_log2 = max(worst_log2, abs(upper - exact) / exact)
            worst_now = max(worst_now, abs(got[label] - exact) / exact)
    assert worst_log2 > 0.25 and worst_now <= LOGLINEAR_RELATIVE_ERROR, (worst_log2, worst_now)


def test_loglinear_error_bound_holds_for_any_values():
    rng = random.Random(7)
    for _ in range(200):
        values = [int(rng.lognormvariate(rng.uniform(0, 25), rng.uniform(0.1, 3))) for _ in range(rng.randint(1, 300))]
        d = Distribution()
        d.add(np.array(values, dtype=np.uint64))
        exact = d.summary()
        merged = stats_from_loglinear(exact["hist_loglinear"], exact["count"], exact["sum"], exact["min"],
                                      exact["max"], exact["hist_log2"])
        for label, _ in PERCENTILES:
            assert abs(merged[label] - exact[label]) <= LOGLINEAR_RELATIVE_ERROR * exact[label], (label, values)
        lows = [lo for lo, _ in exact["hist_loglinear"]]
        assert lows == sorted(set(lows)) and sum(c for _, c in exact["hist_loglinear"]) == len(values)
        assert all(int(loglinear_low(np.array([lo], np.uint64))[0]) == lo for lo in lows)


def test_values_below_128_are_exact_buckets():
    v = np.arange(0, 300, dtype=np.uint64)
    low = loglinear_low(v)
    assert (low[:128] == v[:128]).all()
    assert (low[128:256] == (v[128:256] // 2) * 2).all() and (low[256:] == (v[256:] // 4) * 4).all()


def test_a_document_with_a_forged_loglinear_bucket_is_one_line(tmp_path):
    doc = _doc(FULL_DAT)
    doc["totals"]["hold_ns"]["hist_loglinear"][-1][0] += 1  # not a bucket's lower bound any more
    with pytest.raises(ZlperfError) as err:
        result_from_document(doc, "forged.json")
    assert "totals.hold_ns.hist_loglinear" in str(err.value) and "\n" not in str(err.value)


def test_documents_without_the_histogram_still_merge_with_log2_bounds():
    """A document from an older zlperf (no hist_loglinear) merges as before, and the note says why."""
    old = _doc(FULL_DAT)

    def strip(v):
        if isinstance(v, dict):
            v.pop("hist_loglinear", None)
            for x in v.values():
                strip(x)
        elif isinstance(v, list):
            for x in v:
                strip(x)

    strip(old)
    results = [result_from_document(old, "old", "old"), result_from_document(_doc(FULL_V6_DAT), "new", "new")]
    doc = build_document(merge_results(results, ["old", "new"]))
    assert doc["totals"]["hold_ns"]["percentiles_from"].startswith("log2")
    assert "older zlperf" in doc["percentiles_note"]
