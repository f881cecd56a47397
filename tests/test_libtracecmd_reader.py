"""The libtracecmd reader against the real tools: every event of every fixture vs `trace-cmd report`.

Expectations come from trace-cmd's own text output (report, dump) parsed here, and from the
installed C headers (struct layouts compiled with gcc); nothing is hard-coded.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from conftest import FULL_DAT, FULL_V6_DAT, STOCK_DAT, requires_trace_cmd
from zlperf.errors import TraceFormatError, ZlperfError
from zlperf.events import MISSED_EVENTS
from zlperf.readers import libtracecmd as ltc
from zlperf.readers.libtracecmd import LibTraceCmdReader

pytestmark = requires_trace_cmd

# "[buf: ]comm-pid [cpu] sec.nsec: event: rest" as `trace-cmd report -t` prints it.
_LINE = re.compile(r"^(?:(?P<buf>[\w.-]+): )?\s*(?P<comm>.*?)-(?P<pid>-?\d+)\s+\[(?P<cpu>\d+)\]\s+"
                   r"(?P<ts>\d+\.\d+):\s+(?P<event>\w+):\s*(?P<rest>.*)$")
# "[N EVENTS DROPPED]", or "[EVENTS DROPPED]" when the kernel could not count them (older: "[?? EVENTS ...]").
_DROP = re.compile(r"CPU:\s*(?P<cpu>\d+)\s+\[(?:(?P<n>\d+|\?+) )?EVENTS DROPPED\]")
_STACK = re.compile(r"^=> (?P<func>\S+) \((?P<addr>[0-9a-f]+)\)$")
_KV = re.compile(r"(\w+)=(\S+)")


def iter_report(path: Path, drops: list) -> Iterator[dict]:
    """Events of `trace-cmd report -t PATH` in its order, streamed; drops (cpu, n or -1) appended."""
    proc = subprocess.Popen(["trace-cmd", "report", "-t", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, errors="replace")
    last = None
    after_drop = ""  # report prints "BUF: CPU:N [..DROPPED]" and the next event without "BUF: "
    try:
        for line in proc.stdout:
            line = line.rstrip("\n")
            st = _STACK.match(line)
            if st and last is not None:
                last.setdefault("stack", []).append((st.group("func"), int(st.group("addr"), 16)))
                continue
            d = _DROP.search(line)
            if d:
                n = d.group("n")
                drops.append((int(d.group("cpu")), int(n) if n and n.isdigit() else -1))
                after_drop = line[: d.start()].rstrip().rstrip(":")
                continue
            m = _LINE.match(line)
            if m:
                if last is not None:
                    yield last
                sec, frac = m.group("ts").split(".")
                last = {"ts": int(sec) * 10**9 + int(frac.ljust(9, "0")), "cpu": int(m.group("cpu")),
                        "pid": int(m.group("pid")), "comm": m.group("comm").strip(),
                        "event": m.group("event"), "rest": m.group("rest"),
                        "buf": m.group("buf") or after_drop}
                after_drop = ""
        if last is not None:
            yield last
    finally:
        proc.stdout.close()
        proc.wait()


def report(path: Path) -> tuple[list[dict], list[tuple[int, int]]]:
    """Events and drops (cpu, count or -1) of `trace-cmd report -t PATH` (small files)."""
    drops: list[tuple[int, int]] = []
    events = list(iter_report(path, drops))
    return events, drops


def dump(path: Path, what: str) -> str:
    return subprocess.run(["trace-cmd", "dump", what, "-i", str(path)], check=True, capture_output=True,
                          text=True, errors="replace").stdout


def stream(reader: LibTraceCmdReader, buffer: str = "", comms: dict | None = None) -> Iterator[tuple]:
    """(seq, name, row, batch) for every event in stream order (chunks come in order); task names
    the chunks carry go into ``comms`` before their events are yielded."""
    for chunk in reader.chunks(buffer=buffer):
        if comms is not None:
            comms.update(chunk.comms)
        rows = [(int(s), name, i, b) for name, b in chunk.batches.items() for i, s in enumerate(b.seq.tolist())]
        rows.sort(key=lambda t: t[0])
        yield from rows


def _stack_of(batch, i) -> list[int]:
    row = batch.fields["caller"][i]
    return [int(a) for a in row if a]


def check_against_report(path: Path, buffer: str = "") -> tuple[int, float]:
    """Compare every event of ``path`` with trace-cmd report, streaming both; returns (events, seconds)."""
    drops: list[tuple[int, int]] = []
    truth = iter_report(path, drops)
    # With instances, report prefixes each line with its buffer; keep ours only.
    truth = (e for e in truth if e["buf"] == buffer)
    missed: list[tuple[int, int]] = []
    got_names: Counter = Counter()
    want_names: Counter = Counter()
    n = 0
    comms: dict[int, str] = {}
    with LibTraceCmdReader(str(path)) as r:
        info = r.info
        t0 = time.perf_counter()
        for seq, name, i, b in stream(r, buffer, comms):
            if name == MISSED_EVENTS:
                missed.append((int(b.cpu[i]), int(b.fields["count"][i])))
                continue
            e = next(truth, None)
            assert e is not None, f"reader has more events than trace-cmd report (at seq {seq})"
            # Every event in the same order with the same ts/cpu/pid/name/comm and fields.
            got = (int(b.ts[i]), int(b.cpu[i]), int(b.pid[i]), name.split(":", 1)[1])
            assert got == (e["ts"], e["cpu"], e["pid"], e["event"]), (seq, e)
            if e["comm"] != "<...>":
                assert comms.get(e["pid"]) == e["comm"]
            check_fields(info, name, b, i, e)
            got_names[got[3]] += 1
            want_names[e["event"]] += 1
            n += 1
        elapsed = time.perf_counter() - t0
    rest = Counter(e["event"] for e in truth)
    assert not rest, f"trace-cmd report has more events: {rest}"
    assert got_names == want_names
    # Gaps: one MISSED_EVENTS row per "[N EVENTS DROPPED]" line, same CPU and count.
    assert sorted(missed) == sorted(drops)
    return n, elapsed


def check_fields(info, name: str, b, i: int, e: dict) -> None:
    """Field values against the report's printed text, for the events zlperf cares about."""
    f = {k: v[i] for k, v in b.fields.items()}
    kv = dict(_KV.findall(e["rest"]))
    if name.startswith("kmem:mm_zone_lock") or name == "kmem:mm_zone_locked":
        assert int(f["node_id"]) == int(kv["node"])
        assert f["name"] == kv["zone"]
        assert int(f["count"]) == int(kv["count"])
        assert info.symbols.symbolize(int(f["caller"])) == kv["caller"]
        if name == "kmem:mm_zone_locked":
            assert int(f["contended"]) == int(kv["contended"])
            assert int(f["wait_ns"]) == int(kv["wait"])
    elif name in ("lock:contention_begin", "lock:contention_end"):
        assert int(f["lock_addr"]) == int(e["rest"].split()[0], 16)
        if name == "lock:contention_end":
            assert int(f["ret"]) == int(kv["ret"].rstrip(")"))
    elif name == "ftrace:kernel_stack":
        stack = e.get("stack", [])
        assert _stack_of(b, i) == [a for _, a in stack]
        assert [info.symbols.function(a) for _, a in stack] == [fn for fn, _ in stack]
    elif name in ("kmem:mm_page_alloc", "kmem:mm_page_free"):
        assert int(f["pfn"]) == int(kv["pfn"], 16)
        assert int(f["order"]) == int(kv["order"])


def test_every_event_of_every_fixture_matches_trace_cmd_report(trace_dat):
    n, _ = check_against_report(trace_dat)
    assert n > 0


def test_large_recorded_trace_matches_report_and_throughput(kmem_trace, capsys):
    with LibTraceCmdReader(str(kmem_trace)) as r:
        inst = [b for b in r.info.buffers if b]
    # `trace-cmd extract -B NAME` stores the events in the NAME buffer of the file.
    assert len(inst) == 1
    n, secs = check_against_report(kmem_trace, inst[0])
    assert n > 100_000
    with LibTraceCmdReader(str(kmem_trace)) as r:
        t0 = time.perf_counter()
        total = sum(len(c) for c in r.chunks(buffer=inst[0]))
        secs = time.perf_counter() - t0
    with capsys.disabled():
        print(f"\nlibtracecmd reader: {total} events in {secs:.2f} s = {total / secs:,.0f} events/s ({kmem_trace})")


def _dump_value(summary: str, label: str) -> str:
    m = re.search(r"^\s*(\S+)\s+\[" + re.escape(label) + r"\]", summary, re.M)
    assert m, label
    return m.group(1)


def _options_text(text: str, option: str) -> list[str]:
    """Bodies of `[Option NAME, N bytes]` blocks of `trace-cmd dump --options`."""
    out = []
    for m in re.finditer(r"\[Option " + option + r", \d+ bytes\]\n(.*?)(?=\n\s*\[Option |\Z)", text, re.S):
        out.append(m.group(1).strip())
    return out


def test_info_matches_trace_cmd_dump(trace_dat):
    summary = dump(trace_dat, "--summary")
    options = dump(trace_dat, "--options")
    with LibTraceCmdReader(str(trace_dat)) as r:
        info = r.info
    assert info.version == int(_dump_value(summary, "Version"))
    assert info.long_size == int(_dump_value(summary, "Bytes in a long"))
    assert info.page_size == int(_dump_value(summary, "Page size, bytes"))
    comp = re.search(r"^\s*(\S+)\s+\[Compression algorithm\]", summary, re.M)
    assert info.compression == (comp.group(1) if comp and comp.group(1) != "none" else None)
    clock = re.search(r"\[(\w+)\]", dump(trace_dat, "--clock"))
    assert info.clock == clock.group(1)
    first_line = subprocess.run(["trace-cmd", "report", str(trace_dat)], capture_output=True,
                                text=True).stdout.splitlines()[0]
    assert info.cpus == int(first_line.split("=")[1])
    uname = _options_text(options, "UNAME")
    assert info.uname == uname[0]
    stats = {}
    for body in _options_text(options, "CPUSTAT"):
        kv = dict((k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in body.splitlines()))
        stats[int(kv["CPU"])] = (int(kv["entries"]), int(kv["overrun"]), int(kv["dropped events"]),
                                 int(kv["read events"]))
    assert {c: (s.entries, s.overrun, s.dropped_events, s.read_events)
            for c, s in info.cpu_stats.items()} == stats
    # Saved cmdlines: every pid the file names maps to the same comm.
    with LibTraceCmdReader(str(trace_dat)) as r2:
        for line in dump(trace_dat, "--cmd-lines").splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2 and parts[0].isdigit():
                assert r2.comm(int(parts[0])) == parts[1].strip()


def test_formats_equal_zlperf_parse_of_the_tracefs_format_files():
    """libtraceevent's parse and zlperf.formats agree on every field of the recorded events."""
    from zlperf.formats import parse_event_format

    fmt_dir = Path(__file__).parent / "data" / "formats"
    texts = sorted(fmt_dir.glob("*.format"))
    assert texts
    formats = {}
    for path in (FULL_DAT, STOCK_DAT):
        with LibTraceCmdReader(str(path)) as r:
            formats.update(r.info.formats)
    for p in texts:
        text = p.read_text()
        system = p.stem.split("_", 1)[0]
        ef = parse_event_format(text, system)
        assert formats[ef.full_name].fields == ef.fields
        assert formats[ef.full_name].id == ef.id


def test_struct_layouts_match_installed_headers(tmp_path):
    """The ctypes mirrors of tep_record / tep_event / tep_format_field vs offsetof() from the headers."""
    if not shutil.which("gcc") or not Path("/usr/include/traceevent/event-parse.h").exists():
        pytest.skip("needs gcc and libtraceevent-dev headers")
    members = {
        "tep_record": (ltc.TepRecord, ["ts", "offset", "missed_events", "record_size", "size", "data", "cpu",
                                       "ref_count", "locked", "priv"]),
        "tep_format_field": (ltc.TepFormatField, ["next", "event", "type", "name", "alias", "offset", "size",
                                                  "arraylen", "elementsize", "flags"]),
        "tep_format": (ltc.TepFormat, ["nr_common", "nr_fields", "common_fields", "fields"]),
        "tep_event": (ltc.TepEvent, ["tep", "name", "id", "flags", "format", "system", "handler", "context"]),
    }
    lines = ['#include <stdio.h>', '#include <stddef.h>', '#include <event-parse.h>', 'int main(void) {']
    for struct, (_, fields) in members.items():
        lines.append(f'printf("{struct} sizeof %zu\\n", sizeof(struct {struct}));')
        for f in fields:
            lines.append(f'printf("{struct} {f} %zu\\n", offsetof(struct {struct}, {f}));')
    lines.append("return 0; }")
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    subprocess.run(["gcc", "-I/usr/include/traceevent", str(src), "-o", str(exe)], check=True)
    got = {}
    for line in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.splitlines():
        struct, member, val = line.split()
        got[(struct, member)] = int(val)
    import ctypes

    for struct, (cls, fields) in members.items():
        assert ctypes.sizeof(cls) == got[(struct, "sizeof")], struct
        for f in fields:
            assert getattr(cls, f).offset == got[(struct, f)], (struct, f)


def test_chunking_filter_and_ordering_contract():
    """Small chunks give the same events; per-CPU seq only grows across chunks; filters filter."""
    with LibTraceCmdReader(str(FULL_DAT)) as r:
        whole = {name: b for c in r.chunks() for name, b in c.batches.items()}
    with LibTraceCmdReader(str(FULL_DAT), chunk_events=1000) as r:
        chunks = list(r.chunks())
    assert len(chunks) > 10
    last_seq: dict[int, int] = defaultdict(lambda: -1)
    merged = defaultdict(list)
    for c in chunks:
        assert len(c) <= 1000
        first_in_chunk = {}
        for name, b in c.batches.items():
            merged[name].append(b)
            for cpu in np.unique(b.cpu).tolist():
                first_in_chunk[cpu] = min(first_in_chunk.get(cpu, 1 << 62), int(b.seq[b.cpu == cpu].min()))
        for cpu, s in first_in_chunk.items():
            assert s > last_seq[cpu]
        for name, b in c.batches.items():
            for cpu in np.unique(b.cpu).tolist():
                last_seq[cpu] = max(last_seq[cpu], int(b.seq[b.cpu == cpu].max()))
    for name, b in whole.items():
        parts = merged[name]
        assert np.array_equal(np.concatenate([p.ts for p in parts]), b.ts)
        assert np.array_equal(np.concatenate([p.seq for p in parts]), b.seq)
        for field, col in b.fields.items():
            assert np.array_equal(np.concatenate([p.fields[field] for p in parts]), col), field
    with LibTraceCmdReader(str(FULL_DAT)) as r:
        only = Counter()
        for c in r.chunks(events={"kmem:mm_zone_lock_contended"}):
            for name, b in c.batches.items():
                only[name] += len(b)
    assert set(only) == {"kmem:mm_zone_lock_contended"}
    assert only["kmem:mm_zone_lock_contended"] == len(whole["kmem:mm_zone_lock_contended"])


def test_column_types_follow_the_event_model():
    with LibTraceCmdReader(str(FULL_DAT)) as r:
        fmt = r.info.formats["kmem:mm_zone_locked"]
        b = next(c for c in r.chunks() if "kmem:mm_zone_locked" in c.batches).batches["kmem:mm_zone_locked"]
    assert b.ts.dtype == np.uint64 and b.cpu.dtype == np.int32 and b.pid.dtype == np.int32
    assert b.seq.dtype == np.int64
    for f in fmt.fields:
        col = b.fields[f.name]
        if f.is_string:
            assert col.dtype == object and all(isinstance(x, str) for x in col[:100])
        else:
            want = np.dtype(("i" if f.signed else "u") + str(f.size))
            assert col.dtype == want, f
    assert b.fields["contended"].dtype == np.uint8  # bool -> uint8
    codes, values = b.dictionary["name"]  # strings come interned (EventBatch.dictionary)
    assert codes.dtype == np.int32 and len(set(values)) == len(values)
    assert list(values[codes]) == list(b.fields["name"])
    with LibTraceCmdReader(str(STOCK_DAT)) as r:
        st = next(c for c in r.chunks() if "ftrace:kernel_stack" in c.batches).batches["ftrace:kernel_stack"]
    caller = st.fields["caller"]
    assert caller.dtype == np.uint64 and caller.ndim == 2
    depth = (caller != 0).sum(axis=1)
    assert np.array_equal(depth, st.fields["size"])  # zero-padded past each stack's end


@pytest.mark.parametrize("cut", [0, 5, 12, 4000, 400_000, -1])
def test_bad_files_get_one_line_errors(tmp_path, cut):
    raw = FULL_DAT.read_bytes()
    p = tmp_path / "bad.dat"
    p.write_bytes(raw[:cut] if cut >= 0 else raw[:10] + b"9\0" + raw[12:])
    with pytest.raises(TraceFormatError) as ei:
        LibTraceCmdReader(str(p))
    msg = str(ei.value)
    assert str(p) in msg and "\n" not in msg


def test_wrong_magic_and_missing_file(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("this is not a trace\n" * 10)
    with pytest.raises(TraceFormatError, match="offset 0x0: not a trace.dat"):
        LibTraceCmdReader(str(p))
    with pytest.raises(TraceFormatError, match="no such file"):
        LibTraceCmdReader(str(tmp_path / "absent.dat"))


def test_unknown_buffer_name_is_a_clear_error():
    with LibTraceCmdReader(str(FULL_DAT)) as r:
        with pytest.raises(ZlperfError, match="no buffer"):
            next(r.chunks(buffer="nope"))


def test_missing_library_gives_the_install_hint(monkeypatch):
    from zlperf.readers.libtracecmd import bindings

    monkeypatch.setattr(bindings, "_LIB", None)
    monkeypatch.setattr(bindings, "_SONAMES", (("libtracecmd-absent.so.1", "libtracecmd1"),))
    with pytest.raises(ZlperfError, match="not found: apt install libtracecmd1, or use the fast reader"):
        ltc.load_library()


def test_corrupted_record_length_is_refused_before_libtracecmd_sees_it(tmp_path):
    """A record header whose length runs past its page: libtracecmd is never handed the file (it does
    not survive such damage); the error names the page, and the fast reader reads around it."""
    import ctypes
    import struct

    import zlperf.tracecmd as tracecmd
    from zlperf.readers import open_trace

    src = FULL_V6_DAT.read_bytes()  # v6: record offsets are file offsets
    lib = ltc.load_library()
    h = lib.tracecmd_open(str(FULL_V6_DAT).encode(), 3)
    cpu = ctypes.c_int()
    for _ in range(100):
        rp = lib.tracecmd_read_next_data(h, ctypes.byref(cpu))
        off, rec_cpu = int(rp.contents.offset), int(rp.contents.cpu)
        lib.tracecmd_free_record(rp)
    lib.tracecmd_close(h)
    bad = bytearray(src)
    word = struct.unpack_from("<I", bad, off)[0]
    struct.pack_into("<II", bad, off, word & ~31, 0x10000000)  # type_len 0: length in the next word
    p = tmp_path / "badlen.dat"
    p.write_bytes(bytes(bad))
    with pytest.raises(TraceFormatError, match=f"damaged: cpu {rec_cpu}: page \\d+: .*runs off the page") as ei:
        LibTraceCmdReader(str(p))
    assert str(p) in str(ei.value) and "\n" not in str(ei.value)
    with pytest.raises(tracecmd.FileFormatError, match="damaged"):
        tracecmd.Trace(str(p))
    with open_trace(p) as fast, open_trace(FULL_V6_DAT) as whole:
        n = sum(len(c) for c in fast.chunks())
        assert any(f"cpu {rec_cpu}: page" in w and "lost" in w for w in fast.info.warnings)
        assert 0 < sum(len(c) for c in whole.chunks()) - n < 4096 // 16  # the rest of that one page


def test_record_fits_rejects_records_past_their_page():
    """The reader's last line of defence (records are checked again as libtracecmd hands them out)."""
    assert ltc.record_fits(4096 * 3 + 16, 24, 20, 4096)
    assert not ltc.record_fits(4096 * 3 + 4080, 24, 20, 4096)  # runs off the page
    assert not ltc.record_fits(16, 24, 28, 4096)  # payload longer than the record
    assert not ltc.record_fits(16, 24, -1, 4096)


def _record_offsets(path: Path, count: int) -> list[tuple[int, int]]:
    """(file offset of the header, header length) of the first ``count`` records of a v6 file."""
    import ctypes

    lib = ltc.load_library()
    h = lib.tracecmd_open(str(path).encode(), 3)
    cpu = ctypes.c_int()
    out = []
    try:
        for _ in range(count):
            rp = lib.tracecmd_read_next_data(h, ctypes.byref(cpu))
            out.append((int(rp.contents.offset), int(rp.contents.record_size - rp.contents.size)))
            lib.tracecmd_free_record(rp)
    finally:
        lib.tracecmd_close(h)
    return out


def test_event_id_without_format_is_skipped_and_counted(tmp_path):
    import struct

    (off, hdr), = _record_offsets(FULL_V6_DAT, 50)[-1:]
    bad = bytearray(FULL_V6_DAT.read_bytes())
    struct.pack_into("<H", bad, off + hdr, 0x7FFF)  # common_type of one record: no such event
    p = tmp_path / "noformat.dat"
    p.write_bytes(bytes(bad))
    with LibTraceCmdReader(str(FULL_V6_DAT)) as r:
        whole = sum(len(c) for c in r.chunks())
    with LibTraceCmdReader(str(p)) as r:
        n = sum(len(c) for c in r.chunks())
        assert any("1 record(s) with event id 32767 that has no format" in w for w in r.info.warnings)
    assert n == whole - 1


_FUZZ_CHILD = """
import sys
from zlperf.errors import ZlperfError
from zlperf.readers.libtracecmd import LibTraceCmdReader
for path in sys.argv[1:]:
    print("reading", path, flush=True)
    try:
        with LibTraceCmdReader(path) as r:
            n = sum(len(c) for c in r.chunks())
        print("ok", n, flush=True)
    except ZlperfError as exc:
        assert "\\n" not in str(exc) and path in str(exc), str(exc)
        print("error", flush=True)
"""


def test_fuzz_mutated_files_never_crash_the_reader(tmp_path):
    """Random byte changes in real files (v6: in the ring-buffer pages too): no crash, no traceback.

    libtracecmd is C, so the reads run in a child process: a segfault fails the test by name.
    """
    import random
    import sys

    rng = random.Random(20261128)
    paths = []
    for src in (FULL_V6_DAT, FULL_DAT):
        raw = src.read_bytes()
        data_start = _record_offsets(FULL_V6_DAT, 1)[0][0] if src == FULL_V6_DAT else 0
        for k in range(12):
            b = bytearray(raw)
            for _ in range(rng.randint(1, 40)):
                b[rng.randrange(data_start, len(b))] = rng.randrange(256)
            p = tmp_path / f"{src.stem}-{k}.dat"
            p.write_bytes(bytes(b))
            paths.append(str(p))
    res = subprocess.run([sys.executable, "-c", _FUZZ_CHILD, *paths], capture_output=True, text=True,
                         timeout=600)
    last = [ln for ln in res.stdout.splitlines() if ln.startswith("reading")][-1:]
    assert res.returncode == 0, f"crashed ({res.returncode}) on {last}: {res.stderr[-500:]}"
    assert res.stdout.count("reading") == len(paths)


def test_uncounted_drops_match_report(tmp_path):
    """A page whose header says events were lost without their count: trace-cmd report prints
    "CPU:N [EVENTS DROPPED]" (no number); the reader gives a gap of unknown size (-1) in the same place."""
    from zlperf.readers.tracedat.container import TraceDatFile

    f = TraceDatFile(str(FULL_V6_DAT), str(FULL_V6_DAT))
    buf = next(b for b in f.buffers if not b.latency)
    cd = buf.cpus[0]
    raw = bytearray(FULL_V6_DAT.read_bytes())
    at = cd.offset + 2 * buf.page_size + f.header_page.commit_offset  # CPU 0's third page: its commit word
    commit = int.from_bytes(raw[at:at + 8], "little")
    raw[at:at + 8] = (commit | 1 << 31).to_bytes(8, "little")  # RB_MISSED_EVENTS, not RB_MISSED_STORED
    path = tmp_path / "uncounted.dat"
    path.write_bytes(bytes(raw))
    assert "CPU:0 [EVENTS DROPPED]" in subprocess.run(["trace-cmd", "report", "-t", str(path)], check=True,
                                                      capture_output=True, text=True).stdout
    drops: list = []
    list(iter_report(path, drops))
    assert drops == [(0, -1)]
    n, _ = check_against_report(path)  # every event, and the gap, where report has them
    assert n > 0
