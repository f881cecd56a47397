"""Decoding in worker processes (`--jobs`, zlperf.readers.workers) gives what one process gives: the same
chunks in the same order (every column, stream positions included), the same warnings, the same report;
workers' failures are raised in the reader, and no worker outlives its reader."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import FULL_DAT, FULL_V6_DAT, REPO, TRACE_DATS
from zlperf.analysis import analyze
from zlperf.readers import open_trace
from zlperf.readers.tracedat import FastTraceReader, TraceDatFile
from zlperf.readers.workers import WorkerError, Workers, default_jobs, run_in_workers
from zlperf.report import build_document


def _chunks(reader) -> list:
    """Every chunk as plain comparable values, in order."""
    out = []
    for chunk in reader.chunks():
        batches = []
        for name, b in chunk.batches.items():
            fields = [(k, v.dtype.str, [x.tobytes() for x in v] if v.dtype == object and len(v) and
                       isinstance(v[0], np.ndarray) else v.tolist()) for k, v in b.fields.items()]
            dic = sorted((k, c.tolist(), list(vals)) for k, (c, vals) in b.dictionary.items())
            batches.append((name, b.ts.tolist(), b.cpu.tolist(), b.pid.tolist(), b.seq.tolist(),
                            str(b.cpu.dtype), str(b.pid.dtype), str(b.seq.dtype), fields, dic))
        out.append((batches, sorted(chunk.comms.items())))
    return out


def _read(path, jobs: int, run_bytes: int = 1 << 24) -> tuple[list, list]:
    with FastTraceReader(str(path), jobs=jobs, run_bytes=run_bytes) as r:
        chunks = _chunks(r)
        return chunks, list(r.info.warnings)


@pytest.mark.parametrize("path", TRACE_DATS, ids=lambda p: p.name)
@pytest.mark.parametrize("jobs", [2, 3])
def test_workers_give_the_same_chunks_and_warnings(path, jobs):
    # Small runs: many chunks per CPU, so stream positions carry across runs and workers.
    one = _read(path, 1, run_bytes=64 << 10)
    many = _read(path, jobs, run_bytes=64 << 10)
    assert one[0] and many == one


def _damaged_copy(tmp_path):
    """full.v6.dat with pages damaged on two CPUs: an impossible data size, a broken record header."""
    dst = tmp_path / "damaged.v6.dat"
    shutil.copy(FULL_V6_DAT, dst)
    f = TraceDatFile(str(FULL_V6_DAT))
    try:
        buf = f.buffers[0]
        cpus = [cd for cd in sorted(buf.cpus, key=lambda c: c.cpu) if cd.size >= 8 * buf.page_size]
        page = buf.page_size
    finally:
        f.close()
    assert len(cpus) >= 2
    raw = bytearray(dst.read_bytes())
    struct.pack_into("<Q", raw, cpus[0].offset + 3 * page + 8, 0xFFFFF)  # commit past the page
    struct.pack_into("<I", raw, cpus[1].offset + 5 * page + 16 + 64, 0x3D)  # record type 29 (padding) mid-page
    raw[cpus[1].offset + 6 * page + 16:cpus[1].offset + 6 * page + 48] = b"\xff" * 32
    dst.write_bytes(bytes(raw))
    return dst


def test_damaged_pages_give_the_same_gaps_and_warnings(tmp_path):
    path = _damaged_copy(tmp_path)
    one = _read(path, 1, run_bytes=16 << 10)
    two = _read(path, 2, run_bytes=16 << 10)
    assert one[1] and any("page" in w for w in one[1])
    assert two == one


def _report(path, jobs: int) -> dict:
    with open_trace(path, jobs=jobs) as r:
        return build_document(analyze(r))


@pytest.mark.parametrize("path", TRACE_DATS, ids=lambda p: p.name)
def test_report_is_the_same_with_workers(path):
    assert _report(path, 2) == _report(path, 1)


@pytest.fixture(scope="module")
def scaled(tmp_path_factory):
    """A multi-run v7 zstd recording: full.v6.dat's pages six times (bench/scale_trace.py)."""
    if shutil.which("trace-cmd") is None:
        pytest.skip("trace-cmd not installed (scale_trace.py converts with it)")
    big = tmp_path_factory.mktemp("scaled") / "x6.zstd.dat"
    subprocess.run([sys.executable, str(REPO / "bench" / "scale_trace.py"), str(FULL_V6_DAT), str(big), "--copies",
                    "6", "--compression", "zstd"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return big


def test_scaled_recording_report_cli_is_the_same(scaled):
    """Through `zlperf report --json -j N`: the same text."""
    texts = {}
    for jobs in ("1", "2"):
        proc = subprocess.run([sys.executable, "-m", "zlperf", "report", str(scaled), "--json", "-j", jobs],
                              capture_output=True, text=True, cwd=REPO, check=True)
        texts[jobs] = proc.stdout
    assert texts["1"] == texts["2"]
    assert sum(json.loads(texts["1"])["events"].values()) == 6 * 54296


@pytest.mark.parametrize("at", [0.3, 0.6, 0.9])
def test_damaged_compressed_recording_reads_the_same(scaled, tmp_path, at):
    """Garbage over compressed chunks (lost chunks, records of unknown events): the same chunks and warnings."""
    raw = bytearray(scaled.read_bytes())
    p = int(len(raw) * at)
    raw[p:p + 64] = b"\xa5" * 64
    path = tmp_path / "damaged.dat"
    path.write_bytes(bytes(raw))

    def outcome(jobs):
        try:
            return _read(path, jobs, run_bytes=1 << 20)
        except Exception as exc:  # noqa: BLE001 - the same failure either way is the point
            return type(exc).__name__, str(exc)

    one = outcome(1)
    assert outcome(2) == one
    assert outcome(3) == one


def test_default_jobs_follows_the_environment(monkeypatch):
    monkeypatch.setenv("ZLPERF_JOBS", "3")
    assert default_jobs() == 3
    monkeypatch.setenv("ZLPERF_JOBS", "many")
    with pytest.raises(Exception, match="ZLPERF_JOBS"):
        default_jobs()
    monkeypatch.delenv("ZLPERF_JOBS")
    assert 1 <= default_jobs() <= max(1, len(os.sched_getaffinity(0)))
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert default_jobs() == min(8, cores)  # idle: every core
    monkeypatch.setattr(os, "getloadavg", lambda: (cores + 1.0, 0.0, 0.0))
    assert default_jobs() == 1  # busy: a worker would only take turns with the others


def _children() -> set[int]:
    """This process's children, running or not yet reaped (a zombie still names its parent)."""
    me, pids = os.getpid(), set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as fh:
                    stat = fh.read()
            except OSError:
                continue  # gone meanwhile
            if int(stat[stat.rindex(")") + 2:].split()[1]) == me:
                pids.add(int(entry.name))
    return pids


@pytest.fixture
def no_workers_left():
    """After the test, none of the children it started is left, running or unreaped. Children of other tests
    (a Spark gateway, a browser) are not the business of this one."""
    before = _children()
    yield
    left = _children() - before
    assert not left, f"processes left behind: {sorted(left)}"


def _emit_parts(parts, emit):
    for p in parts:
        emit(("part", p, np.arange(p)))
        emit(("done", p, None))


def test_worker_messages_arrive_in_part_order(no_workers_left):
    got = list(run_in_workers(list(range(7)), 3, _emit_parts, lambda m: m[0] == "done"))
    parts = [m[1] for m in got if m[0] == "part"]
    assert parts == list(range(7))
    assert all((m[2] == np.arange(m[1])).all() for m in got if m[0] == "part")


def _fails(parts, emit):
    emit(("part", parts[0], None))
    raise ValueError(f"part {parts[0]} is bad")


def _dies(parts, emit):
    os._exit(3)


def test_a_worker_exception_is_raised_in_the_reader(no_workers_left):
    with pytest.raises(ValueError, match="part 0 is bad"):
        list(run_in_workers([0, 1], 2, _fails, lambda m: True))


def _format_error(parts, emit):
    from zlperf.errors import TraceFormatError

    raise TraceFormatError("/some/trace.dat", 0x40, "a bad page", "a hint")


def test_a_worker_format_error_keeps_its_class_and_message(no_workers_left):
    from zlperf.errors import TraceFormatError

    with pytest.raises(TraceFormatError, match=r"trace.dat: offset 0x40: a bad page \(a hint\)") as err:
        list(run_in_workers([0], 1, _format_error, lambda m: True))
    assert err.value.offset == 0x40


def test_a_dead_worker_is_a_clear_error(no_workers_left):
    with pytest.raises(WorkerError):
        list(run_in_workers([0, 1], 2, _dies, lambda m: True))


def test_stopping_early_stops_the_workers(no_workers_left):
    with FastTraceReader(str(FULL_DAT), jobs=2, run_bytes=16 << 10) as r:
        it = r.chunks()
        next(it)
        it.close()


def test_workers_start_before_the_first_message_and_stop_unread(no_workers_left):
    """`Workers` forks at once (the caller works meanwhile) and leaving it unread still stops and reaps them."""
    with Workers([0, 1], 2, _emit_parts) as workers:
        assert len(workers.pids) == 2
        assert set(workers.pids) <= _children()
    assert not set(workers.pids) & _children()


def _sends_when_told(parts, emit):
    with open(parts[0], "rb") as fh:  # a FIFO: blocks until the test opens it for writing
        fh.read()
    emit(("part", parts[0]))


def test_waiting_says_whether_a_message_is_there(no_workers_left, tmp_path):
    """`waiting()` is what the reader does with time to spare: true until a worker has sent something."""
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    with Workers([str(fifo)], 1, _sends_when_told) as workers:
        assert workers.waiting()
        with open(fifo, "wb"):
            pass
        deadline = time.monotonic() + 30
        while workers.waiting() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not workers.waiting()
        assert list(workers.messages(lambda m: True)) == [("part", str(fifo))]
