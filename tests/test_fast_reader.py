"""The fast reader against trace-cmd itself: every event, timestamp, pid and printed field.

Expectations come from `trace-cmd report -t -R` text (raw field values), `trace-cmd report`
(stack traces), `--stat` and `trace-cmd dump`, parsed here; nothing is hard-coded.
"""

from __future__ import annotations

import re
import subprocess
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from conftest import FULL_DAT, STOCK_DAT, TRACE_DATS, is_root, requires_trace_cmd
from zlperf.events import MISSED_EVENTS
from zlperf.readers import open_trace
from zlperf.readers.tracedat import FastTraceReader

pytestmark = requires_trace_cmd

_LINE = re.compile(r"^\s*(?:(?P<buf>[\w.-]+):\s+)?(?P<comm>.*?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+"
                   r"(?P<ts>\d+\.\d+):\s+(?P<event>\w+):\s*(?P<rest>.*)$")
_DROPPED = re.compile(r"CPU:\s*(?P<cpu>\d+)\s+\[(?:(?P<n>\d+) )?EVENTS DROPPED\]")
_KV = re.compile(r"(\w+)=(ARRAY\[[^\]]*\]|\S+)")


def _report(path, *args: str) -> str:
    return subprocess.run(["trace-cmd", "report", *args, str(path)], check=True, capture_output=True,
                          text=True, errors="replace").stdout


def _truth(path) -> dict[int, list]:
    """Per CPU, in trace-cmd's order: (ts_ns, pid, comm, event, {field: text}) and ("DROP", n)."""
    per_cpu: dict[int, list] = defaultdict(list)
    for line in _report(path, "-t", "-R").splitlines():
        d = _DROPPED.search(line)
        if d:
            per_cpu[int(d.group("cpu"))].append(("DROP", int(d.group("n")) if d.group("n") else -1))
            continue
        m = _LINE.match(line)
        if not m:
            continue
        sec, frac = m.group("ts").split(".")
        ts = int(sec) * 10**9 + int(frac.ljust(9, "0"))
        per_cpu[int(m.group("cpu"))].append(
            (ts, int(m.group("pid")), m.group("comm").strip(), m.group("event"), dict(_KV.findall(m.group("rest")))))
    return per_cpu


def _ours(reader, **kw) -> dict[int, list]:
    """Per CPU, in seq order: (seq, ts, pid, event, batch, row)."""
    per_cpu: dict[int, list] = defaultdict(list)
    for chunk in reader.chunks(**kw):
        for name, b in chunk.batches.items():
            for i in range(len(b)):
                per_cpu[int(b.cpu[i])].append((int(b.seq[i]), int(b.ts[i]), int(b.pid[i]), name, b, i))
    for rows in per_cpu.values():
        rows.sort(key=lambda r: r[0])
    return per_cpu


def _matches(text: str, value, fmt_field, symbols) -> bool:
    """Does one column value print as trace-cmd's raw ``text``?"""
    if isinstance(value, str):
        return value == text
    if text.startswith("ARRAY["):
        want = bytes(int(x, 16) for x in text[6:-1].split(",") if x.strip())
        got = np.asarray(value)
        if fmt_field.name == "caller" and got.dtype == np.uint64:
            # kernel_stack: the raw dump runs past the record end; compare the real frames.
            got = got[: int(np.count_nonzero(got))]
            want = want[: got.nbytes]
        return got.tobytes()[: len(want)] == want
    v = int(value)
    if re.fullmatch(r"-?\d+", text):
        return v == int(text) or (v & 0xFFFFFFFFFFFFFFFF) == (int(text) & 0xFFFFFFFFFFFFFFFF)
    if re.fullmatch(r"0x[0-9a-fA-F]+", text):
        return (v & 0xFFFFFFFFFFFFFFFF) == int(text, 16)
    # A symbolized address (func+0xoff), as trace-cmd prints kernel text addresses.
    return symbols is not None and symbols.symbolize(v & 0xFFFFFFFFFFFFFFFF) == text


def _compare(path, reader, buffer: str = "") -> int:
    truth = _truth(path)
    ours = _ours(reader, buffer=buffer)
    assert sorted(truth) == sorted(c for c in ours if ours[c]) or not truth
    checked = 0
    for cpu, want in truth.items():
        got = ours.get(cpu, [])
        assert len(got) == len(want), f"cpu {cpu}: {len(got)} rows, trace-cmd shows {len(want)}"
        for w, g in zip(want, got):
            seq, ts, pid, name, b, i = g
            if w[0] == "DROP":
                assert name == MISSED_EVENTS and int(b.fields["count"][i]) == w[1], (cpu, w, g[:4])
                continue
            wts, wpid, wcomm, wev, wfields = w
            assert (ts, pid, name.split(":")[1]) == (wts, wpid, wev), (cpu, w, g[:4])
            fmt = reader.info.formats[name]
            for key, text in wfields.items():
                assert key in b.fields, (name, key)
                assert _matches(text, b.fields[key][i], fmt.field(key), reader.info.symbols), \
                    (cpu, wts, name, key, text, b.fields[key][i])
            checked += 1
    return checked


@pytest.mark.parametrize("path", TRACE_DATS, ids=lambda p: p.name)
def test_every_event_matches_trace_cmd_report(path):
    with open_trace(path, reader="fast") as reader:
        n = _compare(path, reader)
        assert n > 0
        assert reader.info.warnings == []


@pytest.fixture(scope="session")
def converted(tmp_path_factory) -> dict[str, Path]:
    """full.dat rewritten by trace-cmd convert: v7 uncompressed and v6."""
    out = {}
    d = tmp_path_factory.mktemp("converted")
    for name, args in (("v7-none", ["--file-version", "7", "--compression", "none"]), ("v6", ["--file-version", "6"])):
        dst = d / f"full.{name}.dat"
        subprocess.run(["trace-cmd", "convert", "-i", str(FULL_DAT), "-o", str(dst), *args], check=True,
                       capture_output=True)
        out[name] = dst
    return out


@pytest.mark.parametrize("variant", ["v7-none", "v6"])
def test_converted_layouts_read_the_same(converted, variant):
    path = converted[variant]
    with open_trace(path) as reader:
        assert reader.info.compression is None
        assert reader.info.version == (6 if variant == "v6" else 7)
        assert _compare(path, reader) > 0


def test_kernel_stack_depth_and_frames_match_report():
    """ftrace kernel_stack: caller is 2-D, innermost first, as deep as trace-cmd prints, zero-padded."""
    stacks: dict[int, list] = defaultdict(list)
    cur = None
    for line in _report(STOCK_DAT, "-t").splitlines():
        m = _LINE.match(line)
        if m:
            cur = None
            if m.group("event") == "kernel_stack":
                cur = []
                stacks[int(m.group("cpu"))].append(cur)
            continue
        f = re.match(r"^=> (\S+) \(([0-9a-f]+)\)", line)
        if f and cur is not None:
            cur.append(int(f.group(2), 16))
    with open_trace(STOCK_DAT) as reader:
        got: dict[int, list] = defaultdict(list)
        for chunk in reader.chunks(events=["ftrace:kernel_stack"]):
            b = chunk.batches["ftrace:kernel_stack"]
            assert b.fields["caller"].dtype == np.uint64 and b.fields["caller"].ndim == 2
            for i in np.argsort(b.seq):
                row = b.fields["caller"][i]
                depth = int(np.count_nonzero(row))
                assert not row[depth:].any()  # zero padding only past the end
                got[int(b.cpu[i])].append(row[:depth].tolist())
    assert sum(map(len, stacks.values())) > 0
    assert dict(got) == dict(stacks)


def test_info_matches_the_file():
    """Clock, CPUs, uname, CPU stats, cmdlines and symbols as trace-cmd shows them."""
    dump = subprocess.run(["trace-cmd", "dump", "--options", "-i", str(FULL_DAT)], capture_output=True,
                          text=True).stdout
    stat = _report(FULL_DAT, "--stat")
    with open_trace(FULL_DAT) as reader:
        info = reader.info
        assert info.version == 7 and info.compression == "zstd"
        m = re.search(r"\[(\w+)\]", re.search(r"TRACECLOCK.*\n(.*)", dump).group(1))
        assert info.clock == m.group(1)
        assert info.uname and info.uname in dump
        blocks = re.findall(r"CPU: (\d+)\nentries: (\d+)\noverrun: (\d+)\ncommit overrun: (\d+)"
                            r"[\s\S]*?dropped events: (\d+)\nread events: (\d+)", stat)
        assert len(blocks) == info.cpus > 0
        for cpu, entries, overrun, commit_overrun, dropped, read in blocks:
            cs = info.cpu_stats[int(cpu)]
            assert (cs.entries, cs.overrun, cs.commit_overrun, cs.dropped_events, cs.read_events) == \
                (int(entries), int(overrun), int(commit_overrun), int(dropped), int(read))
        assert info.symbols is not None and len(info.symbols) > 1000
        # Every task trace-cmd names from the saved cmdlines has the same name here.
        named = {}
        for line in _report(FULL_DAT, "-t").splitlines():
            m = _LINE.match(line)
            if m and m.group("comm") != "<...>":
                named[int(m.group("pid"))] = m.group("comm").strip()
        assert named
        for pid, comm in named.items():
            assert info.cmdlines.get(pid) == comm
        assert "kmem:mm_zone_locked" in info.formats


@pytest.mark.parametrize("path", TRACE_DATS, ids=lambda p: p.name)
def test_seq_contract_and_streaming_invariance(path):
    """seq increases per CPU across chunks; tiny runs (one page each) give the same events."""
    def collect(reader):
        rows = []
        last: dict[int, int] = {}
        for chunk in reader.chunks():
            seen: dict[int, list] = defaultdict(list)
            for name, b in chunk.batches.items():
                for i in range(len(b)):
                    seen[int(b.cpu[i])].append(int(b.seq[i]))
                    fields = tuple((k, v[i].tobytes() if isinstance(v[i], np.ndarray) else v[i])
                                   for k, v in sorted(b.fields.items()))
                    rows.append((int(b.cpu[i]), int(b.seq[i]), int(b.ts[i]), int(b.pid[i]), name, fields))
            for cpu, seqs in seen.items():
                assert len(set(seqs)) == len(seqs)
                assert min(seqs) > last.get(cpu, -1)
                last[cpu] = max(seqs)
        return sorted(rows)

    with open_trace(path) as big, FastTraceReader(str(path), run_bytes=4096) as small:
        a, b = collect(big), collect(small)
    assert a and [r[:1] + r[2:] for r in a] == [r[:1] + r[2:] for r in b]
    # Within one CPU, timestamps never go backwards in ring-buffer order.
    by_cpu = defaultdict(list)
    for r in a:
        by_cpu[r[0]].append(r[2])
    for ts in by_cpu.values():
        assert all(x <= y for x, y in zip(ts, ts[1:]))


def test_events_filter_decodes_only_those():
    with open_trace(FULL_DAT) as reader:
        names = set()
        n = 0
        for chunk in reader.chunks(events=["kmem:mm_zone_lock_contended"]):
            names |= set(chunk.batches)
            n += len(chunk)
    want = Counter(_LINE.match(l).group("event") for l in _report(FULL_DAT, "-t").splitlines() if _LINE.match(l))
    assert names <= {"kmem:mm_zone_lock_contended", MISSED_EVENTS}
    assert n == want["mm_zone_lock_contended"] > 0


def test_unknown_buffer_is_a_clear_error():
    from zlperf.errors import TraceFormatError

    with open_trace(FULL_DAT) as reader:
        with pytest.raises(TraceFormatError, match="no buffer"):
            list(reader.chunks(buffer="nosuch"))


# ----- live: a real trace recorded here, in an instance, with ring-buffer overruns ---------------
requires_tracefs = pytest.mark.skipif(
    not (is_root() and Path("/sys/kernel/tracing/instances").is_dir()), reason="needs root and tracefs")


@pytest.fixture(scope="module")
def live_traces(tmp_path_factory):
    """Two real kmem recordings: a complete one and an overwritten one (missed events)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from record_trace import record_kmem_trace

    d = tmp_path_factory.mktemp("live")
    full = record_kmem_trace(str(d / "kmem.dat"), buffer_kb=2048, seconds=2, name="zlperf_test_full")
    lossy = record_kmem_trace(str(d / "lossy.dat"), buffer_kb=256, seconds=1, overwrite=True,
                              name="zlperf_test_lossy")
    return full, lossy


@pytest.mark.live
@requires_tracefs
def test_live_instance_trace_matches_report(live_traces):
    full, _ = live_traces
    with open_trace(full) as reader:
        assert "zlperf_test_full" in reader.info.buffers
        n = _compare(full, reader, buffer="zlperf_test_full")
        assert n > 10000
        # The default buffer of an `extract -B` file (empty top buffer) is the recorded instance.
        assert sum(len(c) for c in reader.chunks()) == n
    # The same recording as v6, where the instance is reached through a v6 BUFFER option.
    v6 = full.with_name("kmem.v6.dat")
    subprocess.run(["trace-cmd", "convert", "-i", str(full), "-o", str(v6), "--file-version", "6"], check=True,
                   capture_output=True)
    with open_trace(v6) as reader:
        assert reader.info.version == 6 and "zlperf_test_full" in reader.info.buffers
        assert _compare(v6, reader, buffer="zlperf_test_full") == n


@pytest.mark.live
@requires_tracefs
def test_live_missed_events_match_report(live_traces):
    _, lossy = live_traces
    with open_trace(lossy) as reader:
        _compare(lossy, reader)
        missed = sum(len(c.batches.get(MISSED_EVENTS, [])) for c in reader.chunks())
    drops = sum(1 for line in _report(lossy, "-t").splitlines() if _DROPPED.search(line))
    assert missed == drops > 0


# ----- zlib: trace-cmd here is built without it, so re-compress a real zstd file chunk by chunk -----
def _transcode_to_zlib(src: Path, dst: Path) -> None:
    """Rewrite a v7 zstd trace.dat with every compressed section and data chunk in zlib.

    A plain re-encoding of the same bytes (sizes and offsets recomputed), written from the
    trace-cmd.dat.v7 layout with struct: sections first, then per-CPU chunks, options last.
    """
    import struct
    import zlib

    import zstandard

    raw = src.read_bytes()
    unz = zstandard.ZstdDecompressor()
    i = raw.index(b"\0", 10) + 1  # after "tracing" + version string
    head_end = i + 6  # endian byte, long size byte, u32 page size
    comp_end = raw.index(b"\0", raw.index(b"\0", head_end) + 1) + 1
    (first_opts,) = struct.unpack_from("<Q", raw, comp_end)
    out = bytearray(raw[:head_end] + b"zlib\0" + b"1.2\0")
    fix_first = len(out)
    out += b"\0" * 8

    def section(off: int) -> tuple[int, bytes]:
        sid, flags, _desc, size = struct.unpack_from("<HHIQ", raw, off)
        body = raw[off + 16: off + 16 + size]
        if flags & 1:
            csize, usize = struct.unpack_from("<II", body)
            body = unz.decompress(body[8:8 + csize], max_output_size=usize)
        return sid, body

    def put_section(sid: int, body: bytes) -> int:
        at = len(out)
        z = zlib.compress(body)
        payload = struct.pack("<II", len(z), len(body)) + z
        out.extend(struct.pack("<HHIQ", sid, 1, 0, len(payload)) + payload)
        return at

    options: list[tuple[int, bytes]] = []
    off = first_opts
    while off:
        _sid, body = section(off)
        p, off = 0, 0
        while p < len(body):
            oid, size = struct.unpack_from("<HI", body, p)
            data = body[p + 6: p + 6 + size]
            p += 6 + size
            if oid == 0:
                (off,) = struct.unpack("<Q", data[:8])
                break
            if 16 <= oid <= 21:
                (sec_off,) = struct.unpack("<Q", data[:8])
                data = struct.pack("<Q", put_section(*section(sec_off)))
            elif oid == 3:  # BUFFER: re-compress its CPUs' chunks, page-aligned
                (fly,) = struct.unpack_from("<Q", data)
                q = data.index(b"\0", 8) + 1
                q = data.index(b"\0", q) + 1
                page_size, ncpu = struct.unpack_from("<II", data, q)
                fly_at = len(out)
                out.extend(struct.pack("<HHIQ", 3, 1, 0, 0))
                cpus = []
                for c in range(ncpu):
                    cpu, coff, csize = struct.unpack_from("<IQQ", data, q + 8 + 20 * c)
                    out.extend(b"\0" * (-len(out) % page_size))
                    start = len(out)
                    if csize:
                        (count,) = struct.unpack_from("<I", raw, coff)
                        out.extend(struct.pack("<I", count))
                        r = coff + 4
                        for _ in range(count):
                            cs, us = struct.unpack_from("<II", raw, r)
                            pages = unz.decompress(raw[r + 8: r + 8 + cs], max_output_size=us)
                            z = zlib.compress(pages)
                            out.extend(struct.pack("<II", len(z), len(pages)) + z)
                            r += 8 + cs
                    cpus.append((cpu, start, len(out) - start - 4 if csize else 0))
                struct.pack_into("<Q", out, fly_at + 8, len(out) - fly_at - 16)
                data = struct.pack("<Q", fly_at) + data[8:q] + struct.pack("<II", page_size, ncpu) + b"".join(
                    struct.pack("<IQQ", *c) for c in cpus)
            options.append((oid, data))
    opts_at = len(out)
    body = b"".join(struct.pack("<HI", oid, len(d)) + d for oid, d in options) + struct.pack("<HIQ", 0, 8, 0)
    out.extend(struct.pack("<HHIQ", 0, 0, 0, len(body)) + body)
    struct.pack_into("<Q", out, fix_first, opts_at)
    dst.write_bytes(bytes(out))


@pytest.mark.parametrize("src", [FULL_DAT, STOCK_DAT], ids=lambda p: p.name)
def test_zlib_compressed_file_reads_the_same(tmp_path, src):
    dst = tmp_path / "zlib.dat"
    _transcode_to_zlib(src, dst)

    def rows(path):
        out = []
        with open_trace(path) as reader:
            assert reader.info.warnings == []
            comp = reader.info.compression
            for chunk in reader.chunks():
                for name, b in chunk.batches.items():
                    for i in range(len(b)):
                        fields = tuple((k, np.asarray(v[i]).tobytes() if not isinstance(v[i], str) else v[i])
                                       for k, v in sorted(b.fields.items()))
                        out.append((int(b.cpu[i]), int(b.seq[i]), int(b.ts[i]), int(b.pid[i]), name, fields))
        return comp, sorted(out)

    (ca, a), (cb, b) = rows(src), rows(dst)
    assert (ca, cb) == ("zstd", "zlib")
    assert a and a == b
