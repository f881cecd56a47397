"""The analysis on every core (zlperf.analysis.parallel): CPUs analysed in parts, in forked workers, merge into
the result of one pass over the whole recording, for every real recording, option and ABI; recordings that
cannot merge are analysed in one pass."""

from __future__ import annotations

import pytest

from conftest import DATA, FULL_DAT, FULL_PERF_DATA, FULL_V6_DAT, STOCK_DAT, TRACE_DATS
from zlperf.analysis import AnalysisOptions, analyze
from zlperf.analysis import parallel
from zlperf.analysis.core import Analyzer
from zlperf.analysis.parallel import _absorb, _analyse_part
from zlperf.events import ReadPart
from zlperf.readers import open_trace
from zlperf.readers.tracedat import FastTraceReader
from zlperf.report import build_document

RECORDINGS = [*TRACE_DATS, DATA / "series.dat", DATA / "lab" / "peers-hold-time.dat",
              DATA / "lab" / "live-hold-time.dat", FULL_PERF_DATA, DATA / "lab" / "hold-time.perf.data"]


def _document(path, jobs: int, options=None) -> dict:
    with open_trace(str(path), jobs=jobs) as r:
        return build_document(analyze(r, options))


@pytest.fixture
def merges(monkeypatch):
    """Counts the analyses that were merged from parts (not redone in one pass)."""
    calls = {"parts": 0, "merged": 0}
    real = parallel.analyze_parts

    def spy(reader, options, parts):
        calls["parts"] += 1
        an = real(reader, options, parts)
        calls["merged"] += an is not None
        return an

    monkeypatch.setattr(parallel, "analyze_parts", spy)
    return calls


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.name)
@pytest.mark.parametrize("jobs", [2, 3])
def test_parts_give_the_one_pass_document(path, jobs, merges):
    one = _document(path, 1)
    assert merges["parts"] == 0
    assert _document(path, jobs) == one
    assert merges["parts"] == 1  # every recording here has events on several CPUs
    # Stock kernels' waits are found by any CPU's stack: analysed again in one pass; the others merge.
    assert merges["merged"] == (0 if path == STOCK_DAT else 1)


@pytest.mark.parametrize("options", [
    AnalysisOptions(top=3), AnalysisOptions(top=0), AnalysisOptions(zone="0:Normal"),
    AnalysisOptions(since_ns=0, until_ns=None), AnalysisOptions(abi="series"), AnalysisOptions(bin_ns=1000),
], ids=["top3", "top0", "zone", "since", "abi-series", "fine-bins"])
@pytest.mark.parametrize("path", [FULL_V6_DAT, FULL_PERF_DATA], ids=lambda p: p.name)
def test_options_give_the_one_pass_document(options, path):
    assert _document(path, 3, options) == _document(path, 1, options)


def test_a_window_in_the_middle_gives_the_one_pass_document():
    doc = _document(FULL_DAT, 1)
    lo, hi = doc["window"]["first_ts_ns"], doc["window"]["last_ts_ns"]
    options = AnalysisOptions(since_ns=lo + (hi - lo) // 3, until_ns=lo + 2 * (hi - lo) // 3)
    windowed = _document(FULL_DAT, 2, options)
    assert windowed == _document(FULL_DAT, 1, options)
    assert 0 < windowed["totals"]["acquisitions"] < doc["totals"]["acquisitions"]


def test_damaged_pages_give_the_one_pass_document_and_warnings(tmp_path):
    """Garbage over pages of several CPUs: the same gaps, lost records and warnings, in the same order."""
    raw = bytearray(FULL_V6_DAT.read_bytes())
    for at in (0.35, 0.6, 0.85):
        p = int(len(raw) * at)
        raw[p:p + 48] = b"\xa5" * 48
    path = tmp_path / "damaged.dat"
    path.write_bytes(bytes(raw))
    one = _document(path, 1)
    assert one["warnings"], "the damage should be reported"
    assert _document(path, 3) == one


def _per_cpu_merge(path, split_at: int, drop_unlocks_after: bool = False):
    """One pass, and the same recording analysed as CPUs < split_at then the rest (a second reader, as a
    worker would), merged by the parallel module's own merge step."""
    with FastTraceReader(str(path), jobs=1) as whole:
        cpus = tuple(sorted(c.cpu for c in whole._resolve("").cpus))
        first, rest = ReadPart(cpus[:split_at], 0, first=True), ReadPart(cpus[split_at:], 0)
        an = Analyzer(whole.info)
        for chunk in whole.chunks(part=first):
            an.feed(chunk)
        with FastTraceReader(str(path), jobs=1) as other:
            if drop_unlocks_after:  # the later CPUs as a wait-time recording would have them
                real = other.chunks

                def chunks(**kw):
                    for chunk in real(**kw):
                        chunk.batches.pop("kmem:mm_zone_lock_unlock", None)
                        yield chunk
                other.chunks = chunks
            got = _analyse_part(other, None, rest)
        inexact: set[str] = set()
        _absorb(an, got, first.used, inexact)
        whole.end_parts([first, got.part])
        return an, inexact


@pytest.mark.parametrize("split_at", [1, 4, 7])
def test_the_merge_step_equals_one_pass(split_at):
    an, inexact = _per_cpu_merge(FULL_V6_DAT, split_at)
    assert not inexact
    with FastTraceReader(str(FULL_V6_DAT), jobs=1) as r:
        assert build_document(an.result()) == build_document(analyze(r))


def test_acquisitions_one_pass_would_have_paired_make_the_merge_inexact():
    """The later CPUs without unlocks: one pass pairs their acquisitions (an unlock was seen before), a part
    alone cannot know to, so the kmem lane must be redone in one pass."""
    _an, inexact = _per_cpu_merge(FULL_V6_DAT, 4, drop_unlocks_after=True)
    assert inexact == {"kmem"}


def test_a_worker_failure_is_the_one_pass_failure(tmp_path):
    """A part that cannot be read fails the whole analysis with the reader's own message."""
    raw = bytearray(FULL_DAT.read_bytes())
    path = tmp_path / "cut.dat"
    path.write_bytes(bytes(raw[: int(len(raw) * 0.9)]))

    def outcome(jobs):
        try:
            return _document(path, jobs)
        except Exception as exc:  # noqa: BLE001 - the same outcome either way is the point
            return type(exc).__name__, str(exc)

    assert outcome(3) == outcome(1)


def test_no_worker_outlives_the_analysis(tmp_path):
    """Analysed in parts, failing or not, no worker is left running or unreaped."""
    from test_parallel_decode import _children

    before = _children()
    _document(FULL_V6_DAT, 3)
    cut = tmp_path / "cut.dat"
    cut.write_bytes(FULL_DAT.read_bytes()[:100_000])
    try:
        _document(cut, 3)
    except Exception:  # noqa: BLE001 - only what is left behind matters here
        pass
    assert not _children() - before


def test_equal_worst_cases_keep_stream_order_however_the_stream_is_cut():
    """Worst cases with equal values: the earliest in the stream, whatever the chunks or parts."""
    import numpy as np

    from zlperf.analysis.aggregate import TopN

    values = np.array([5, 9, 5, 9, 1, 9, 5], np.uint64)
    seq = np.arange(len(values), dtype=np.int64) * 10
    rows = {"ts": seq.astype(np.uint64), "wait_ns": values, "seq": seq}
    kept = []
    for cut in range(1, len(values)):
        top = TopN(3)
        top.add({k: v[cut:] for k, v in rows.items()}, "wait_ns")  # the later part first
        top.add({k: v[:cut] for k, v in rows.items()}, "wait_ns")
        kept.append([(r["wait_ns"], r["seq"]) for r in top.sorted_rows("wait_ns")])
    assert all(k == [(9, 10), (9, 30), (9, 50)] for k in kept)
    top = TopN(4)
    top.add(rows, "wait_ns")
    assert [r["seq"] for r in top.sorted_rows("wait_ns")] == [10, 30, 50, 0]
