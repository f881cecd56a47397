"""Interval results (zlperf top, the exporter) add up to the whole recording's result, for every ABI.

The real recordings are cut into time windows and fed window by window, every CPU's part of a window before
the next window, the way the live reader hands them over; the intervals' counters and distributions, summed,
must equal `analyze()` of the same file (the adapters' pairing state carries across intervals), and holders
must be the same when every wait is shorter than a window. No root needed.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from conftest import FULL_DAT, FULL_V6_DAT, MINIMAL_DAT, STOCK_DAT, WAIT_DAT, DATA
from zlperf.analysis import AnalysisOptions, analyze
from zlperf.analysis.live import IntervalAnalyzer
from zlperf.analysis.stats import Distribution
from zlperf.events import Chunk, EventBatch
from zlperf.live.metrics import BOUNDS_NS, Histogram, LiveTotals
from zlperf.readers import open_trace

SERIES_DAT = DATA / "series.dat"
#: stock-threads.dat has no zone->lock waits: pretend two of its paths mark one, so that a lock is named by a
#: single wait in the middle of the recording (waits before it are held back until then).
STOCK_FRAMES = {"do_mprotect_pkey": "test", "vma_expand": "test"}


def _windows(path, n: int) -> tuple[object, list[list[Chunk]]]:
    """The file's chunks cut into ``n`` equal time windows (per CPU by its running max timestamp)."""
    with open_trace(str(path)) as reader:
        info = reader.info
        chunks = list(reader.chunks())
    ts = np.concatenate([b.ts for c in chunks for b in c.batches.values() if len(b)])
    edges = np.linspace(int(ts.min()), int(ts.max()) + 1, n + 1).astype(np.uint64)[1:-1]
    out: list[list[Chunk]] = [[] for _ in range(n)]
    running: dict[int, int] = {}
    for chunk in chunks:
        rows = [(name, i, int(b.cpu[i]), int(b.seq[i]), int(b.ts[i])) for name, b in chunk.batches.items()
                for i in range(len(b))]
        rows.sort(key=lambda r: (r[2], r[3]))
        window_of: dict[tuple[str, int], int] = {}
        for name, i, cpu, _seq, t in rows:
            running[cpu] = max(running.get(cpu, 0), t)
            window_of[(name, i)] = int(np.searchsorted(edges, np.uint64(running[cpu]), side="right"))
        for w in range(n):
            part = Chunk(comms=dict(chunk.comms))
            for name, b in chunk.batches.items():
                keep = np.array([window_of[(name, i)] == w for i in range(len(b))], dtype=bool)
                if keep.any():
                    part.batches[name] = EventBatch(
                        name, b.ts[keep], b.cpu[keep], b.pid[keep], b.seq[keep],
                        {k: v[keep] for k, v in b.fields.items()})
            if part.batches:
                out[w].append(part)
    return info, out


def _merged(dists) -> Distribution:
    d = Distribution()
    for x in dists:
        d.merge(x)
    return d


@pytest.mark.parametrize("path,options", [
    (FULL_DAT, None), (FULL_V6_DAT, None), (WAIT_DAT, None), (MINIMAL_DAT, None), (SERIES_DAT, None),
    (STOCK_DAT, AnalysisOptions(zone_lock_frames=STOCK_FRAMES)),
], ids=lambda v: getattr(v, "name", "opts"))
def test_intervals_add_up_to_the_recording(path, options):
    with open_trace(str(path)) as reader:
        whole = analyze(reader, options)
    info, windows = _windows(path, 7)
    live = IntervalAnalyzer(info, options)
    intervals = []
    for chunks in windows:
        for chunk in chunks:
            live.feed(chunk)
        intervals.append(live.take())
    assert sum(iv.events for iv in intervals) == sum(whole.events.values())
    for label in {z.key.label for z in whole.zones}:
        mine = [z for iv in intervals for z in iv.result.zones if z.key.label == label]
        ref = next(z for z in whole.zones if z.key.label == label)
        for counter in ("contended_events", "acquisitions", "contended"):
            assert sum(getattr(z.counts, counter) for z in mine) == getattr(ref.counts, counter), (label, counter)
        for which in ("wait", "hold"):
            got = _merged(getattr(z, which) for z in mine)
            want = getattr(ref, which)
            assert (got.count, got.total) == (want.count, want.total), (label, which)
            assert np.array_equal(got.table()[0], want.table()[0])
    # zone x caller waits are the same waits, by caller
    cross = Counter()
    for iv in intervals:
        for zc in iv.zone_callers:
            cross[zc.group.key.symbol] += zc.group.wait.count
    by_caller = {c.key.symbol: c.wait.count for c in whole.callers if c.wait.count}
    assert {k: v for k, v in cross.items() if v} == by_caller
    if whole.holders is not None:  # who held the lock: the same when waits are shorter than an interval
        pairs = Counter()
        for iv in intervals:
            for h in iv.result.holders.handoffs:
                pairs[(h.waiter_caller, h.holder_caller)] += h.waits
        assert pairs == Counter({(h.waiter_caller, h.holder_caller): h.waits for h in whole.holders.handoffs})
        assert sum(iv.result.holders.not_traced for iv in intervals) == whole.holders.not_traced


def test_stock_waits_are_held_until_their_lock_is_named():
    """The lock named by one wait mid-recording: its earlier waits arrive in the interval that names it."""
    options = AnalysisOptions(zone_lock_frames=STOCK_FRAMES)
    info, windows = _windows(STOCK_DAT, 7)
    live = IntervalAnalyzer(info, options)
    per_interval = []
    for chunks in windows:
        for chunk in chunks:
            live.feed(chunk)
        per_interval.append(sum(z.counts.contended_events for z in live.take().result.zones))
    assert sum(per_interval) > 0
    assert per_interval.count(0) >= 1  # nothing before the lock was named ...
    first = next(i for i, n in enumerate(per_interval) if n)
    assert per_interval[first] > 1  # ... then the waits held back arrive together


def test_zone_names_learned_late_keep_one_zone():
    """A zone seen by address first and named later stays one zone (one code, its name from then on)."""
    options = AnalysisOptions(zone_lock_frames=STOCK_FRAMES)
    info, windows = _windows(STOCK_DAT, 4)
    named: dict[int, tuple[int, str]] = {}
    live = IntervalAnalyzer(info, options, zone_names=lambda: named)
    seen = []
    for w, chunks in enumerate(windows):
        for chunk in chunks:
            live.feed(chunk)
        if w == 2:  # the side program names the busiest lock now
            counts = Counter()
            for zs in seen:
                counts.update({z.key.lock_addr: z.counts.contended_events for z in zs})
            busiest = counts.most_common(1)[0][0]
            named[busiest] = (0, "Normal")
        seen.append(live.take().result.zones)
    before = [z.key.label for zs in seen[:2] for z in zs if z.key.lock_addr == busiest]
    after = [z.key.label for zs in seen[2:] for z in zs if z.key.lock_addr == busiest]
    assert before and all(label == f"lock@{busiest:#x}" for label in before)
    assert after and all(label == "0:Normal" for label in after)
    assert [z.lock_addr for z in live.zones.zones].count(busiest) == 1


def test_exporter_totals_and_histograms_from_intervals():
    """LiveTotals: counters add up, buckets are exact (<= bound) and sum to the count, labels stay bounded."""
    info, windows = _windows(FULL_DAT, 5)
    with open_trace(str(FULL_DAT)) as reader:
        whole = analyze(reader)
    live = IntervalAnalyzer(info)
    totals = LiveTotals(max_callers=2)
    for chunks in windows:
        for chunk in chunks:
            live.feed(chunk)
        totals.add(live.take())
    assert sum(z.contended_events for z in totals.zones.values()) == whole.totals.counts.contended_events
    assert sum(z.acquisitions for z in totals.zones.values()) == whole.totals.counts.acquisitions
    assert totals.total_waits() == whole.totals.wait.count
    assert sum(h.sum_ns for h in totals.waits.values()) == whole.totals.wait.total
    assert len({caller for _, caller in totals.waits}) <= 3  # two callers and "other"
    values, counts = whole.totals.wait.table()
    merged = np.sum([h.buckets for h in totals.waits.values()], axis=0)
    for i, bound in enumerate(BOUNDS_NS):  # cumulative bucket i = waits <= bound, from the exact values
        assert int(np.cumsum(merged)[i]) == int(counts[values <= bound].sum())
    hold = Histogram()
    hold.add(whole.totals.hold)
    assert sum(z.hold.count for z in totals.zones.values()) == hold.count
    assert sum(z.hold.sum_ns for z in totals.zones.values()) == hold.sum_ns


def test_a_stream_without_end_forgets_waits_on_locks_never_named():
    """Stock kernels: waits on other locks (none of this file's is a zone lock) are held only up to a bound."""
    info, windows = _windows(STOCK_DAT, 5)
    live = IntervalAnalyzer(info, AnalysisOptions(max_held_waits=8))
    stock = next(adapter for adapter, _ in live.lanes if adapter.key == "stock")
    for chunks in windows:
        for chunk in chunks:
            live.feed(chunk)
        result = live.take().result
        assert sum(len(v) for v in stock._held.values()) <= 8
    assert stock.forgotten > 0
    assert any("forgotten" in note for note in result.capabilities.notes)
    assert result.zones == []
    assert IntervalAnalyzer(info).options.max_held_waits  # bounded by default
