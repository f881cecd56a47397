"""The native page walker (_pagewalk.c) against the numpy walk, record by record.

Both walk the same pages: every real recording's runs, and real pages damaged at random (hypothesis),
read little- and big-endian. The readers' own tests check the result against libtracecmd and
``trace-cmd report``; this checks the two walks are the same code in effect, and that no page makes
the native one read or write out of bounds (a crash would end the test process).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FULL_DAT, REPO, TRACE_DATS, DATA
from zlperf.formats import EventFormat, FieldFormat, HeaderPage
from zlperf.readers.tracedat import native
from zlperf.readers.tracedat.container import TraceDatFile
from zlperf.readers.tracedat.fields import gather_fields, gathered_columns, read_type_ids, walk_slot
from zlperf.readers.tracedat.ringbuffer import decode_pages

LAB_DATS = sorted((DATA / "lab").glob("*.dat"))

pytestmark = pytest.mark.skipif(not native.available(), reason="native page walker not built (no C compiler?)")


def _runs(path, formats=None):
    """(header page, page size, byte order, pages) of every run of every CPU of every buffer of ``path``;
    the file's event formats go into ``formats`` (a list) when given."""
    f = TraceDatFile(str(path), str(path))
    if formats is not None:
        formats.extend(f.formats.values())
    try:
        for buf in f.buffers:
            if buf.latency:
                continue
            for cd in buf.cpus:
                for run in f.page_runs(buf, cd, lambda _m: None, 1 << 20):
                    yield f.header_page, buf.page_size, f.big_endian, run.data
    finally:
        f.close()


def _columns_equal(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for name in a:
        x, y = a[name], b[name]
        assert x.dtype == y.dtype and x.shape == y.shape, name
        assert (x.tolist() == y.tolist()) if x.dtype == object else np.array_equal(x, y), name


def _gathers_the_same(data: np.ndarray, page_size: int, hp: HeaderPage, big: bool, formats: list,
                      per_byte: float = 1 / 16) -> int:
    """The fields the native walk gathers of ``formats``' records equal numpy's gather after the walk (every
    column, dtype, string and dictionary); the number of records gathered. ``per_byte``: the slots'
    estimate (0: room for 256 records, a slot with more is given up)."""
    slots = [walk_slot(fmt, fmt.id & 0xFFFF) for fmt in formats]
    for slot in slots:
        slot.per_byte = per_byte
    a = decode_pages(data, page_size, hp, big, type_off=0, slots=slots)
    assert a.gathered is not None and len(a.gathered) == len(formats)
    n = 0
    for fmt, slot, got in zip(formats, slots, a.gathered):
        idx = np.flatnonzero(a.types == (fmt.id & 0xFFFF))
        if got is None:  # more records than the slot's rows: given up, numpy gathers them
            assert idx.size > min(int(per_byte * len(data) * 1.25) + 256, 2 * len(data) // slot.reach)
            continue
        assert np.array_equal(got.rec, idx)
        want_dict: dict = {}
        want = gather_fields(data, a.off[idx], a.length[idx], fmt, big, 8, want_dict, [])
        got_dict: dict = {}
        cols = gathered_columns(got, fmt, big, got_dict)
        if cols is None:  # a field only numpy reads: the rest from the walk's rows
            cols = gather_fields(data, a.off[idx], a.length[idx], fmt, big, 8, got_dict, [], got)
        _columns_equal(cols, want)
        assert list(got_dict) == list(want_dict)
        for name in want_dict:
            assert np.array_equal(got_dict[name][0], want_dict[name][0])
            assert got_dict[name][1].tolist() == want_dict[name][1].tolist()
        n += idx.size
    return n


def _same(data: np.ndarray, page_size: int, hp: HeaderPage, big: bool, gap_before: bool = False) -> int:
    """Decode ``data`` both ways, assert every column and problem equal, and the event ids the native walk
    reads as it goes equal to those numpy reads after it (at the real offset 0, and at one near the end of
    a record); the number of events."""
    for type_off in (0, 6):
        a = decode_pages(data, page_size, hp, big, gap_before, native=True, type_off=type_off)
        b = decode_pages(data, page_size, hp, big, gap_before, native=False, type_off=type_off)
        for name in ("off", "length", "ts", "index", "missed_index", "missed_count", "missed_ts"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype, name
            assert np.array_equal(x, y), name
        assert a.problems == b.problems
        assert b.types is None and a.types is not None
        field = FieldFormat("common_type", "unsigned short", type_off, 2, False)
        assert np.array_equal(a.types.astype(np.int64), read_type_ids(data, b.off, field, big))
    return a.off.shape[0]


def test_the_native_walker_is_built_where_a_compiler_is():
    # setup.sh builds it (pip install -e .); CI must test the native walk, not only the numpy one.
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    assert native.available()


@pytest.mark.parametrize("path", TRACE_DATS + LAB_DATS, ids=lambda p: p.name)
def test_real_recordings_walk_the_same(path):
    events = gathered = 0
    formats: list = []
    for hp, page_size, big, data in _runs(path, formats):
        events += _same(data, page_size, hp, big)
        events += _same(data, page_size, hp, big, gap_before=True)
        # The kmem events, ftrace's kernel stacks (left to numpy), then whatever else fits 16 slots.
        wanted = sorted(formats, key=lambda f: (f.system != "kmem", f.name != "kernel_stack"))[:16]
        gathered += _gathers_the_same(data, page_size, hp, big, wanted)
        _gathers_the_same(data, page_size, hp, big, wanted, per_byte=0)  # slots given up when full
    assert events > 0 and gathered > 0


_PAGES = next(data for _hp, _ps, _big, data in _runs(FULL_DAT))[: 4 * 4096].copy()
_HP = TraceDatFile(str(FULL_DAT), str(FULL_DAT)).header_page


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, _PAGES.size // 4 - 1), st.integers(0, 2 ** 32 - 1)), max_size=24),
       st.booleans(), st.booleans())
def test_damaged_pages_walk_the_same(changes, big, gap_before):
    data = _PAGES.copy()
    words = data.view(np.uint32)
    for at, value in changes:
        words[at] = value
    _same(data, 4096, _HP, big, gap_before)
    _gathers_the_same(data, 4096, _HP, big, _FULL_FORMATS + [_MADE_UP])


_FULL_FORMATS = [f for f in TraceDatFile(str(FULL_DAT), str(FULL_DAT)).formats.values() if f.system == "kmem"]


def _field(name: str, ctype: str, offset: int, size: int, signed: bool = False, **kw) -> FieldFormat:
    return FieldFormat(name, ctype, offset, size, signed, **kw)


# An event of id 0 (the id of most made-up records) with every kind of field the walk gathers or leaves to
# numpy: small and unaligned integers, an array, a __data_loc and a __rel_loc string, a char array.
_MADE_UP = EventFormat("test", "made_up", 0, [
    _field("common_type", "unsigned short", 0, 2), _field("common_flags", "unsigned char", 2, 1),
    _field("common_pid", "int", 4, 4, True), _field("name", "__data_loc char[]", 8, 4, data_loc=True),
    _field("odd", "u64", 12, 8), _field("trio", "unsigned int[3]", 20, 12, array_len=3),
    _field("rel", "__rel_loc char[]", 32, 4, rel_loc=True), _field("comm", "char[4]", 36, 4, array_len=4),
    _field("last", "short", 40, 2, True)])


# A record header word: type/length in the low 5 bits (little-endian layout), any delta above.
_HEADER_WORDS = st.one_of(st.integers(0, 2 ** 32 - 1),
                          st.tuples(st.integers(0, 31), st.integers(0, 2 ** 27 - 1)).map(lambda t: t[0] | t[1] << 5),
                          st.integers(0, 64))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([64, 256, 4096]), st.lists(st.tuples(st.integers(0, 2 ** 64 - 1), st.integers(0, 4200),
                                                            st.integers(0, 3), st.lists(_HEADER_WORDS, max_size=48)),
                                                  min_size=1, max_size=4),
       st.booleans())
def test_made_up_pages_walk_the_same(page_size, pages, big):
    """Pages built from header words likely to make every record type, size and layout corner."""
    words = np.zeros(len(pages) * page_size // 4, np.uint32)
    for p, (ts, size, flags, body) in enumerate(pages):
        base = p * page_size // 4
        words[base], words[base + 1] = ts & 0xFFFFFFFF, ts >> 32
        words[base + 2] = size | flags << 30
        room = page_size // 4 - 4
        words[base + 4: base + 4 + min(len(body), room)] = body[:room]
    data = words.view(np.uint8)
    _same(data, page_size, _HP, big)
    _same(data, page_size, _HP, big, gap_before=True)
    _gathers_the_same(data, page_size, _HP, big, [_MADE_UP])
    # A 32-bit kernel's page header (4-byte commit word, data at 12).
    _same(data, page_size, HeaderPage(timestamp_offset=0, commit_offset=8, commit_size=4, data_offset=12), big)


def test_without_the_native_walker_reports_are_the_same(tmp_path):
    """ZLPERF_NATIVE=0 turns the walker off (the escape hatch README gives); the report is byte-identical."""
    docs = []
    for flag in ("1", "0"):
        env = dict(os.environ, ZLPERF_NATIVE=flag)
        out = subprocess.run([sys.executable, "-m", "zlperf", "report", str(FULL_DAT), "--json", "-j", "1"],
                             capture_output=True, text=True, env=env, cwd=REPO, check=True)
        docs.append(out.stdout)
    assert docs[0] == docs[1] and '"events"' in docs[0]


def _empty_record_at_the_end() -> np.ndarray:
    """One page whose last record is an empty event (type_len 0, length word 1) ending exactly at the page's
    end: its payload starts past the run, so the event's common_type is past the run too."""
    page = np.zeros(1024, np.uint32)
    page[0] = 1000
    page[2] = 4096 - 16  # data size: the whole page
    page[4] = 29 | (1 << 5)  # padding (a discarded event) up to the last 8 bytes
    page[5] = 4096 - 16 - 12
    page[1022], page[1023] = 0, 1
    return page.view(np.uint8)


@pytest.mark.parametrize("walk", ["native", "numpy"])
def test_an_empty_record_ending_the_run_is_read_not_a_crash(walk, monkeypatch):
    from zlperf.formats import FieldFormat
    from zlperf.readers.tracedat.runs import RunDecoder

    if walk == "numpy":
        monkeypatch.setenv("ZLPERF_NATIVE", "0")
        monkeypatch.setattr(native, "_walker", None)  # looked up again, now off
    skipped = []
    decoder = RunDecoder(HeaderPage(), FieldFormat("common_type", "unsigned short", 0, 2, False),
                         lambda _id: None, lambda ev_id, n: skipped.append((ev_id, n)))
    out = decoder.decode(_empty_record_at_the_end(), 4096, 0, 0)
    assert skipped == [(0, 1)]  # read as type 0 (bytes past the run are zeros), which has no format: skipped
    assert out.used == 1 and out.problems == []


@pytest.mark.parametrize("path", TRACE_DATS, ids=lambda p: p.name)
def test_a_run_decodes_the_same_when_the_walk_gathers_its_fields(path):
    """A RunDecoder gathers in numpy the event ids it meets first, in the walk from then on: the same run
    decoded twice gives the same chunk, batch for batch and column for column."""
    from zlperf.readers.tracedat.runs import RunDecoder

    f = TraceDatFile(str(path), str(path))
    by_id = {fmt.id: fmt for fmt in f.formats.values()}
    type_field = next(iter(by_id.values())).field("common_type")
    decoder = RunDecoder(f.header_page, type_field, by_id.get, lambda _id, _n: None, big=f.big_endian)
    compared = 0
    for hp, page_size, big, data in _runs(path):
        first = decoder.decode(data, page_size, 0, 0).chunk.batches
        second = decoder.decode(data, page_size, 0, 0).chunk.batches
        assert list(first) == list(second)
        for name, a in first.items():
            b = second[name]
            for column in ("ts", "cpu", "pid", "seq"):
                assert np.array_equal(getattr(a, column), getattr(b, column)), (name, column)
            _columns_equal(a.fields, b.fields)
            compared += a.ts.shape[0]
    f.close()
    assert compared > 0 and decoder._slots


def test_formats_claiming_wide_records_are_bounded():
    """A format (read from the file) may claim fields far past its records: the walk's rows for it stay within
    twice the run's bytes (else the slot is given up to numpy), and past 1 KB it is never given to the walk."""
    from zlperf.readers.tracedat.runs import RunDecoder

    hp, page_size, big, data = next(_runs(FULL_DAT))
    real = next(f for f in _FULL_FORMATS if f.name == "mm_zone_locked")
    near = EventFormat(real.system, real.name, real.id, real.fields + [_field("far", "u64", 1000, 8)])
    _gathers_the_same(data, page_size, hp, big, [near])  # within 1 KB: gathered (or given up), never unbounded
    slot = walk_slot(near)
    assert 2 * len(data) // slot.reach < 3 * len(data) // 1000

    wide = EventFormat(real.system, real.name, real.id, real.fields + [_field("far", "u64", 4000, 8)])
    decoder = RunDecoder(hp, real.field("common_type"), {real.id: wide}.get, lambda _id, _n: None, big=big)
    first = decoder.decode(data, page_size, 0, 0).chunk.batches
    second = decoder.decode(data, page_size, 0, 0).chunk.batches
    assert decoder._slots == []  # too wide for the walk: numpy gathers it every run
    _columns_equal(first[wide.full_name].fields, second[wide.full_name].fields)


def test_a_slot_for_an_id_no_record_can_have_is_refused():
    """Records carry 16-bit ids: a slot for a larger one (a format id from a damaged file) is not followed."""
    hp, page_size, big, data = next(_runs(FULL_DAT))
    real = next(f for f in _FULL_FORMATS if f.name == "mm_zone_locked")
    a = decode_pages(data, page_size, hp, big, type_off=0, slots=[walk_slot(real, real.id + (1 << 16))])
    assert a.gathered is None and a.types is not None
    b = decode_pages(data, page_size, hp, big, type_off=0, slots=[walk_slot(real)])
    assert b.gathered is not None and b.gathered[0] is not None and len(b.gathered[0].rec) > 0
