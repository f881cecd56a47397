"""The per-CPU pairer's shortcut for alternating chunks (``feed_alternating``) against its general rule
(``feed``): the same pairs, carries and observations, on made-up streams and on real recordings."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FULL_DAT, FULL_V6_DAT
from zlperf.analysis import AnalysisOptions, Analyzer
from zlperf.analysis.pairing import CLOSE, OPEN, PerCpuPairer
from zlperf.readers import open_trace
from zlperf.report import build_document


def _rows(kinds: list[int], keys: list[int], seqs: list[int], cpu: int) -> dict[str, np.ndarray]:
    n = len(kinds)
    return {"kind": np.array(kinds, np.int8), "seq": np.array(seqs, np.int64), "key": np.array(keys, np.int32),
            "cpu": np.full(n, cpu, np.int32)}


def _pairs(res) -> dict:
    seq = res.table["seq"]  # indices are into the table paired: the carried rows, then the chunk
    return {"pairs": sorted(zip(seq[res.open_idx].tolist(), seq[res.close_idx].tolist())),
            **{k: sorted(seq[getattr(res, k)].tolist())
               for k in ("unmatched_close", "unreleased_open", "broken_close", "broken_open")}}


def _feed_both(general: PerCpuPairer, shortcut: PerCpuPairer, events: list[tuple[int, int]], cpu: int,
               seq0: int) -> tuple[dict, bool]:
    """One chunk of ``events`` ((kind, key) in stream order) into both pairers; what each paired."""
    seqs = list(range(seq0, seq0 + len(events)))
    table = _rows([k for k, _ in events], [key for _, key in events], seqs, cpu)
    want = _pairs(general.feed(table))
    o = table["kind"] == OPEN
    opens = {k: v[o] for k, v in table.items()}
    closes = {k: v[~o] for k, v in table.items()}
    pending = {k: v[-1:] for k, v in opens.items()}
    before = shortcut._carry
    alt = shortcut.feed_alternating(opens, closes, pending)
    if alt is None:
        assert shortcut._carry is before  # nothing changed: the general rule takes the chunk
        return want, _pairs(shortcut.feed(table)) == want
    first_close = closes["seq"][: alt.first].tolist()
    pairs = [(int(alt.carried["seq"][0]), first_close[0])] if alt.carried is not None else []
    pairs += list(zip(opens["seq"][: alt.pairs].tolist(), closes["seq"][alt.first:].tolist()))
    got = {"pairs": sorted(pairs), "unmatched_close": [], "unreleased_open": [], "broken_close": [],
           "broken_open": []}
    return want, got == want


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.lists(st.tuples(st.sampled_from([OPEN, CLOSE]), st.integers(0, 1)), max_size=12),
                       min_size=1, max_size=5),
       cpus=st.lists(st.integers(0, 2), min_size=5, max_size=5),
       alternate=st.booleans())
def test_shortcut_pairs_as_the_general_rule(chunks, cpus, alternate):
    if alternate:  # most real chunks: open, close, open, close ... (same key), cut anywhere
        flat = [(OPEN if i % 2 == 0 else CLOSE, 0) for i in range(sum(len(c) for c in chunks))]
        cut, chunks = 0, [c[:] for c in chunks]
        for c in chunks:
            c[:] = flat[cut:cut + len(c)]
            cut += len(c)
    general, shortcut = PerCpuPairer(), PerCpuPairer()
    seq = 0
    for chunk, cpu in zip(chunks, cpus):
        if not chunk:
            continue
        want, same = _feed_both(general, shortcut, chunk, cpu, seq)
        assert same, (chunks, cpus, want)
        seq += len(chunk)
    # What is still open at the end is the same in both: unreleased alike.
    end = _rows([], [], [], 0)
    assert _pairs(general.feed(end, final=True)) == _pairs(shortcut.feed(end, final=True))


def _observations(path, monkeypatch, shortcut: bool, run_bytes: int) -> tuple[list, dict]:
    if not shortcut:
        monkeypatch.setattr(PerCpuPairer, "feed_alternating", lambda self, *a: None)
    seen: list = []
    with open_trace(str(path), reader="fast", jobs=1) as reader:
        reader.run_bytes = run_bytes  # small runs: many chunk boundaries inside holds
        an = Analyzer(reader.info, AnalysisOptions(top=10), observer=lambda key, obs: seen.append(obs))
        for chunk in reader.chunks():
            an.feed(chunk)
        doc = build_document(an.result())
    monkeypatch.undo()
    return seen, doc


@pytest.mark.parametrize("path", [FULL_DAT, FULL_V6_DAT], ids=lambda p: p.name)
@pytest.mark.parametrize("run_bytes", [4096, 1 << 20])
def test_real_recordings_observe_the_same_with_and_without_the_shortcut(path, run_bytes, monkeypatch):
    slow, slow_doc = _observations(path, monkeypatch, False, run_bytes)
    fast, fast_doc = _observations(path, monkeypatch, True, run_bytes)
    assert slow_doc == fast_doc
    assert len(slow) == len(fast) > 2
    tables = hinted = 0
    for a, b in zip(slow, fast):
        assert a.holds_from_acquired is None  # the general rule gives no hint
        hinted += b.holds_from_acquired is not None
        for name in a.TABLES:
            ta, tb = getattr(a, name), getattr(b, name)
            assert (ta is None) == (tb is None), name
            if ta is None:
                continue
            assert list(ta) == list(tb), name
            for col in ta:
                assert ta[col].dtype == tb[col].dtype, (name, col)
                assert np.array_equal(ta[col], tb[col]), (name, col)
            tables += 1
    assert tables > 10 and hinted > 2
    holds = sum(len(o.holds["ts"]) for o in fast if o.holds is not None)
    assert holds > 1000  # the recording's holds went through it
