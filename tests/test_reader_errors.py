"""Bad input to the fast reader: one clear TraceFormatError when nothing can be read, else
what can be read plus a warning saying what was lost. Real files, damaged on purpose.

Offsets of the per-CPU data come from `trace-cmd dump`, not from zlperf's own parser.
"""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FULL_DAT, FULL_PERF_DATA, FULL_V6_DAT, MINIMAL_DAT, requires_trace_cmd
from zlperf.errors import TraceFormatError, ZlperfError
from zlperf.events import MISSED_EVENTS
from zlperf.readers import open_trace


def _read_all(path) -> tuple[dict[int, list], list[str]]:
    """Per CPU, in stream order: (name, ts, pid); plus the warnings."""
    with open_trace(path, reader="fast") as reader:
        rows = defaultdict(list)
        for chunk in reader.chunks():
            for name, b in chunk.batches.items():
                for i in range(len(b)):
                    rows[int(b.cpu[i])].append((int(b.seq[i]), name, int(b.ts[i]), int(b.pid[i])))
        warnings = list(reader.info.warnings)
    return {c: [r[1:] for r in sorted(v)] for c, v in rows.items()}, warnings


def _events_only(rows: list) -> list:
    return [r for r in rows if r[0] != MISSED_EVENTS]


def _copy(src: Path, tmp_path: Path, name: str = "t.dat") -> Path:
    dst = tmp_path / name
    shutil.copyfile(src, dst)
    return dst


def _patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def _cpu_data_offsets(path: Path) -> dict[int, tuple[int, int]]:
    """cpu -> (offset, size) of its data in the file, as `trace-cmd dump --flyrecord` prints it."""
    out = subprocess.run(["trace-cmd", "dump", "--flyrecord", "-i", str(path)], capture_output=True, text=True)
    text = out.stdout + out.stderr
    found = {}
    # v7: "   CPU OFFSET\tSIZE\t[id, data offset and size]"; v6: "OFFSET SIZE [offset, size of cpu N]"
    for m in re.finditer(r"^\s*(\d+) (\d+)\t(\d+)\t\[id, data offset and size\]", text, re.M):
        if int(m.group(3)):
            found[int(m.group(1))] = (int(m.group(2)), int(m.group(3)))
    for m in re.finditer(r"^\s*(\d+)\s+(\d+)\s+\[offset, size of cpu (\d+)\]", text, re.M):
        if int(m.group(2)):
            found[int(m.group(3))] = (int(m.group(1)), int(m.group(2)))
    return found


def _one_line(exc: BaseException, path: Path) -> str:
    msg = str(exc)
    assert "\n" not in msg and str(path) in msg
    return msg


# ----- nothing readable: one clear error --------------------------------------------------------
def test_not_a_trace_dat(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello, this is not a trace\n")
    with pytest.raises(TraceFormatError) as ei:
        open_trace(p)
    assert "not a trace.dat" in _one_line(ei.value, p) and "offset 0x0" in str(ei.value)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.dat"
    p.write_bytes(b"")
    with pytest.raises(TraceFormatError, match="not a trace.dat"):
        open_trace(p)


def test_perf_data_is_not_a_trace_dat_to_the_fast_reader():
    from zlperf.readers.tracedat import FastTraceReader

    with pytest.raises(TraceFormatError, match="wrong magic"):
        FastTraceReader(str(FULL_PERF_DATA))


def test_wrong_magic(tmp_path):
    p = _copy(FULL_DAT, tmp_path)
    _patch(p, 0, b"\x18")
    with pytest.raises(TraceFormatError) as ei:
        open_trace(p)
    assert "wrong magic" in _one_line(ei.value, p)


@pytest.mark.parametrize("version", [b"5", b"8", b"x"])
def test_unsupported_version(tmp_path, version):
    p = _copy(FULL_DAT, tmp_path)
    raw = p.read_bytes()
    at = raw.index(b"tracing") + len(b"tracing")
    _patch(p, at, version)
    with pytest.raises(TraceFormatError) as ei:
        open_trace(p)
    msg = _one_line(ei.value, p)
    assert f"offset {at:#x}" in msg and ("version" in msg)


def test_missing_file_and_bad_reader_name(tmp_path):
    with pytest.raises(ZlperfError, match="no such file"):
        open_trace(tmp_path / "nope.dat")
    with pytest.raises(ZlperfError, match="unknown reader"):
        open_trace(FULL_DAT, reader="bogus")


# ----- partly readable: what can be read, and a warning --------------------------------------
@requires_trace_cmd
@pytest.mark.parametrize("src", [FULL_DAT, FULL_V6_DAT], ids=lambda p: p.name)
def test_file_cut_inside_the_data_keeps_a_prefix_of_each_cpu(tmp_path, src):
    full, warnings = _read_all(src)
    assert warnings == []
    offsets = _cpu_data_offsets(src)
    assert offsets
    # Cut in the middle of the last CPU's data (the data of the others comes before it).
    last_cpu, (off, size) = max(offsets.items(), key=lambda kv: kv[1][0])
    cut = off + size // 2
    p = tmp_path / "cut.dat"
    p.write_bytes(src.read_bytes()[:cut])
    try:
        got, warnings = _read_all(p)
    except TraceFormatError as exc:
        # trace-cmd writes a v7 file's buffer index (the BUFFER option) after the data: a v7 file
        # cut inside its data has no index left, and says so.
        assert src == FULL_DAT and "cut short" in _one_line(exc, p)
        return
    assert any(f"cpu {last_cpu}" in w for w in warnings), warnings
    for cpu, rows in full.items():
        mine = _events_only(got.get(cpu, []))
        want = _events_only(rows)
        if cpu == last_cpu:
            assert len(mine) < len(want) and mine == want[: len(mine)]
        elif offsets.get(cpu, (0, 0))[0] < off:
            assert mine == want, cpu


@pytest.mark.parametrize("src", [MINIMAL_DAT, FULL_V6_DAT], ids=lambda p: p.name)
def test_file_cut_at_many_bytes(tmp_path, src):
    """Every cut either fails with one clear line or reads a subset with a warning."""
    raw = src.read_bytes()
    full, _ = _read_all(src)
    total = sum(len(_events_only(v)) for v in full.values())
    cuts = sorted(set(list(range(0, 40)) + list(range(40, len(raw), max(1, len(raw) // 60))) + [len(raw) - 1]))
    p = tmp_path / "cut.dat"
    outcomes = {"error": 0, "partial": 0}
    for cut in cuts:
        p.write_bytes(raw[:cut])
        try:
            got, warnings = _read_all(p)
        except TraceFormatError as exc:
            _one_line(exc, p)
            outcomes["error"] += 1
            continue
        n = sum(len(_events_only(v)) for v in got.values())
        assert n <= total
        if n < total:
            assert warnings, cut  # whatever was lost is said
        outcomes["partial"] += 1
    assert outcomes["error"] and outcomes["partial"]


@requires_trace_cmd
def test_corrupted_page_header_loses_that_page_only(tmp_path):
    full, _ = _read_all(FULL_V6_DAT)
    offsets = _cpu_data_offsets(FULL_V6_DAT)
    cpu, (off, size) = min(offsets.items())
    p = _copy(FULL_V6_DAT, tmp_path)
    page = 2
    # The page's commit word (after its 8-byte timestamp): claim more data than a page holds.
    _patch(p, off + page * 4096 + 8, struct.pack("<Q", 0x00FFFFFF))
    got, warnings = _read_all(p)
    assert any(f"cpu {cpu}: page {page}" in w and "lost" in w for w in warnings), warnings
    for c in full:
        if c != cpu:
            assert got[c] == full[c]
    want, mine = _events_only(full[cpu]), _events_only(got[cpu])
    assert 0 < len(want) - len(mine) <= 4096 // 12  # at most one page of records
    # What is left is the stream with one contiguous run (the page) taken out, and a gap marked there.
    i = next(i for i, (a, b) in enumerate(zip(want, mine)) if a != b)
    assert mine[i:] == want[i + len(want) - len(mine):]
    gaps = [r for r in got[cpu] if r[0] == MISSED_EVENTS]
    assert len(gaps) == 1


@requires_trace_cmd
def test_compressed_chunk_that_does_not_decompress(tmp_path):
    full, _ = _read_all(FULL_DAT)
    offsets = _cpu_data_offsets(FULL_DAT)
    cpu, (off, size) = max(offsets.items(), key=lambda kv: kv[1][1])
    p = _copy(FULL_DAT, tmp_path)
    raw = p.read_bytes()
    count, csize, usize = struct.unpack_from("<III", raw, off)
    assert count > 1
    # Damage the zstd frame of the CPU's first chunk (its magic), leaving the chunk sizes intact.
    _patch(p, off + 12, b"\0\0\0\0")
    got, warnings = _read_all(p)
    assert any(f"cpu {cpu}" in w and "does not decompress" in w for w in warnings), warnings
    for c in full:
        if c != cpu:
            assert got[c] == full[c]
    want, mine = _events_only(full[cpu]), _events_only(got[cpu])
    assert 0 < len(mine) < len(want)
    assert mine == want[len(want) - len(mine):]  # the chunks after the damaged one are read
    assert got[cpu][0][0] == MISSED_EVENTS  # and the loss is a gap in the stream


@requires_trace_cmd
def test_event_id_without_format(tmp_path):
    full, _ = _read_all(FULL_V6_DAT)
    offsets = _cpu_data_offsets(FULL_V6_DAT)
    cpu, (off, _size) = min(offsets.items())
    p = _copy(FULL_V6_DAT, tmp_path)
    raw = p.read_bytes()
    # The first data record of the CPU's first page (skip time extends; type_len 0 has a length word).
    pos = off + 16
    while True:
        (hdr,) = struct.unpack_from("<I", raw, pos)
        tl = hdr & 31
        if tl >= 29:
            pos += 8
            continue
        payload = pos + (8 if tl == 0 else 4)
        break
    _patch(p, payload, struct.pack("<H", 65000))
    got, warnings = _read_all(p)
    assert any("event id 65000" in w and "no format" in w for w in warnings), warnings
    assert len(_events_only(got[cpu])) == len(_events_only(full[cpu])) - 1
    assert _events_only(got[cpu]) == _events_only(full[cpu])[1:]


def test_unknown_compression_is_one_clear_line(tmp_path):
    p = _copy(FULL_DAT, tmp_path)
    raw = p.read_bytes()
    at = raw.index(b"zstd\0")
    _patch(p, at, b"lzma")
    with pytest.raises(TraceFormatError) as ei:
        open_trace(p)
    assert "not supported" in _one_line(ei.value, p)


# ----- fuzz: mutated real files, nothing but TraceFormatError may escape ------------------------
_SEEDS: dict[str, bytes] = {}


def _seed(which: str) -> bytes:
    """The real file a fuzz example mutates: v7 zstd (minimal.dat) or v6 (full.v6.dat), read once."""
    if which not in _SEEDS:
        _SEEDS[which] = (MINIMAL_DAT if which == "v7" else FULL_V6_DAT).read_bytes()
    return _SEEDS[which]


@st.composite
def _mutation(draw):
    which = draw(st.sampled_from(["v7", "v6"]))
    n = len(_seed(which))
    edits = draw(st.lists(st.tuples(
        st.one_of(st.integers(0, 4096), st.integers(0, n - 1)),  # the header area, or anywhere
        st.binary(min_size=1, max_size=8)), min_size=0, max_size=6))
    cut = draw(st.one_of(st.none(), st.integers(0, n)))
    return which, edits, cut


def _read_mutated(seed: bytes, edits: list, cut, suffix: str) -> None:
    """``seed`` with ``edits`` applied and cut at ``cut``, read to the end: only a one-line
    TraceFormatError naming the file may escape, and every batch is whole."""
    data = bytearray(seed)
    for at, b in edits:
        data[at:at + len(b)] = b
    if cut is not None:
        del data[cut:]
    with tempfile.NamedTemporaryFile(suffix=suffix) as tf:
        tf.write(data)
        tf.flush()
        try:
            with open_trace(tf.name, reader="fast") as reader:
                for chunk in reader.chunks():
                    for b in chunk.batches.values():
                        assert len(b.ts) == len(b.cpu) == len(b.pid) == len(b.seq)
                        assert all(len(col) == len(b.ts) for col in b.fields.values())
                assert all("\n" not in w for w in reader.info.warnings)
        except TraceFormatError as exc:
            assert "\n" not in str(exc) and tf.name in str(exc)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutation())
def test_fuzz_mutated_files_raise_only_trace_format_error(m):
    which, edits, cut = m
    _read_mutated(_seed(which), edits, cut, ".dat")


# ----- fuzz: mutated perf.data files (plain and perf record -z), nothing but TraceFormatError ----------
_PERF_SEEDS: dict[str, bytes] = {}


def _perf_seed(which: str) -> bytes:
    """The real perf.data a fuzz example mutates, as recorded or rewritten as ``perf record -z`` writes it."""
    if which not in _PERF_SEEDS:
        raw = FULL_PERF_DATA.read_bytes()
        if which == "z":
            from test_hostile_readers import compress_perf

            raw = compress_perf(raw)
        _PERF_SEEDS[which] = raw
    return _PERF_SEEDS[which]


@st.composite
def _perf_mutation(draw):
    which = draw(st.sampled_from(["plain", "z"]))
    raw = _perf_seed(which)
    n = len(raw)
    d_off, d_size = struct.unpack_from("<QQ", raw, 40)
    tail = d_off + d_size  # the feature table and sections (tracing data: the event formats)
    edits = draw(st.lists(st.tuples(
        st.one_of(st.integers(0, 1024), st.integers(tail, n - 1), st.integers(d_off, tail - 1)),
        st.binary(min_size=1, max_size=8)), min_size=0, max_size=6))
    cut = draw(st.one_of(st.none(), st.integers(0, n)))
    return which, edits, cut


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_perf_mutation())
def test_fuzz_mutated_perf_data_raise_only_trace_format_error(m):
    which, edits, cut = m
    _read_mutated(_perf_seed(which), edits, cut, ".perf.data")
