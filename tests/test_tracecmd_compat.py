"""zlperf.tracecmd behaves as trace-cmd's Python ``tracecmd`` module, checked against `trace-cmd report`.

Scripts in upstream's style run unchanged through `zlperf tracecmd-script`; every value they
see is compared with the reference tool's text output on the real fixtures.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

import zlperf.tracecmd as tracecmd
from conftest import FULL_DAT, FULL_V6_DAT, STOCK_DAT, requires_trace_cmd
from test_libtracecmd_reader import _KV, iter_report, report

pytestmark = requires_trace_cmd


def _formats_text(path: Path) -> dict[str, list[str]]:
    """Own field names per event from `trace-cmd dump --events` (format text, common_* dropped)."""
    text = subprocess.run(["trace-cmd", "dump", "--events", "-i", str(path)], check=True,
                          capture_output=True, text=True).stdout
    out: dict[str, list[str]] = {}
    name = None
    for line in text.splitlines():
        m = re.match(r"\s*name:\s*(\S+)", line)
        if m:
            name = m.group(1)
            out[name] = []
            continue
        f = re.match(r"\s*field:(.*?);", line)
        if f and name:
            decl = f.group(1).strip()
            fname = re.sub(r"\[.*\]$", "", decl.split()[-1])
            if not fname.startswith("common_"):
                out[name].append(fname)
    return out


UPSTREAM_STYLE_SCRIPT = textwrap.dedent('''
    # Written against trace-cmd's python/tracecmd.py: per-CPU reads, as its own __main__ test does.
    import sys
    import tracecmd

    t = tracecmd.Trace(sys.argv[1])
    print("Trace contains data for %d cpus" % (t.cpus))
    for cpu in range(0, t.cpus):
        ev = t.read_event(cpu)
        while ev:
            print("%d %d %s %d %s" % (ev.ts, ev.cpu, ev.name, ev.pid, ev.comm))
            ev = t.read_event(cpu)
    sys.exit(int(sys.argv[2]))
''')


def test_upstream_style_script_runs_unchanged_and_sees_every_event(tmp_path):
    script = tmp_path / "count_events.py"
    script.write_text(UPSTREAM_STYLE_SCRIPT)
    res = subprocess.run([sys.executable, "-m", "zlperf", "tracecmd-script", str(script), str(FULL_DAT), "7"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 7, res.stderr
    lines = res.stdout.splitlines()
    truth, _ = report(FULL_DAT)
    cpus = int(subprocess.run(["trace-cmd", "report", str(FULL_DAT)], capture_output=True,
                              text=True).stdout.splitlines()[0].split("=")[1])
    assert lines[0] == "Trace contains data for %d cpus" % cpus
    got = Counter(tuple(ln.split(" ", 4)) for ln in lines[1:])
    want = Counter((str(e["ts"]), str(e["cpu"]), e["event"], str(e["pid"]), e["comm"]) for e in truth)
    assert got == want


def test_script_runner_restores_the_interpreter(tmp_path):
    from zlperf.commands.tracecmd_script import run_script

    script = tmp_path / "s.py"
    script.write_text("import sys, tracecmd\nprint(tracecmd.__name__, sys.argv[1:])\n")
    argv, path = sys.argv[:], sys.path[:]
    assert run_script(str(script), ["a", "b"]) == 0
    assert sys.argv == argv and sys.path == path and "tracecmd" not in sys.modules


def test_missing_script_is_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "zlperf", "tracecmd-script", str(tmp_path / "nope.py")],
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.count("\n") == 1 and "no such script" in res.stderr


@pytest.mark.parametrize("path", [FULL_DAT, FULL_V6_DAT], ids=lambda p: p.name)
def test_fields_match_report(path):
    truth, _ = report(path)
    own_fields = _formats_text(path)
    t = tracecmd.Trace(str(path))
    n = 0
    for e in truth:
        ev = t.read_next_event()
        assert (ev.ts, ev.cpu, ev.name, ev.pid) == (e["ts"], e["cpu"], e["event"], e["pid"])
        assert ev.num_field("common_pid") == e["pid"]
        assert ev.keys() == own_fields[ev.name] and list(ev) == ev.keys()
        kv = dict(_KV.findall(e["rest"]))
        assert ev.num_field("node_id") == int(kv["node"])
        # tep_read_number_field reads the bytes unsigned, as upstream's binding returns them.
        assert ev.num_field("count") == int(kv["count"]) % (1 << 32)
        assert ev.str_field("name") == kv["zone"] == str(ev["name"])
        assert ev["name"].data.rstrip(b"\0").decode() == kv["zone"]
        assert int(ev["node_id"]) == int(kv["node"])
        caller = ev.num_field("caller")
        assert caller == int(ev["caller"])
        if ev.name == "mm_zone_locked":
            assert ev.num_field("wait_ns") == int(kv["wait"])
            assert ev.num_field("contended") == int(kv["contended"])
        assert str(ev).startswith("%d.%09d CPU%d %s: pid=%d comm=%s type=" % (
            e["ts"] // 10**9, e["ts"] % 10**9, e["cpu"], e["event"], e["pid"], e["comm"]))
        n += 1
    assert t.read_next_event() is None
    assert n == len(truth) > 0
    t.close()


def test_event_mapping_and_missing_fields():
    with tracecmd.Trace(str(FULL_DAT)) as t:
        ev = t.read_next_event()
        assert "name" in ev and "common_pid" not in ev and len(ev) == len(ev.keys())
        with pytest.raises(KeyError):
            ev["common_pid"]  # upstream: only the event's own fields by key
        assert ev.num_field("no_such_field") is None and ev.str_field("no_such_field") is None
        assert ev.type == ev.num_field("common_type")
        assert t.pevent.file_endian in "<>"
    with tracecmd.Trace(str(STOCK_DAT)) as t:
        ev = t.read_next_event()
        while ev.name != "kernel_stack":
            ev = t.read_next_event()
        with pytest.raises(tracecmd.FieldError):
            int(ev["caller"])  # a 64-byte array is no number
        assert ev.num_field("caller") is None


def test_peek_and_per_cpu_reads_agree():
    truth, _ = report(STOCK_DAT)
    per_cpu = {}
    for e in truth:
        per_cpu.setdefault(e["cpu"], []).append(e["ts"])
    t = tracecmd.Trace(str(STOCK_DAT))
    for cpu in range(t.cpus):
        seen = []
        while True:
            peek = t.peek_event(cpu)
            ev = t.read_event(cpu)
            if ev is None:
                assert peek is None
                break
            assert peek.ts == ev.ts and peek.name == ev.name
            seen.append(ev.ts)
        assert seen == per_cpu.get(cpu, [])


def test_read_event_at_returns_the_same_record():
    t = tracecmd.Trace(str(FULL_V6_DAT))
    evs = [t.read_next_event() for _ in range(50)]
    for ev in evs[::7]:
        again = t.read_event_at(ev._record.contents.offset)
        assert (again.ts, again.cpu, again.name, again.num_field("caller")) == \
            (ev.ts, ev.cpu, ev.name, ev.num_field("caller"))


def test_stack_field_names_the_report_frames():
    truth, _ = report(STOCK_DAT)
    stacks = [[fn for fn, _ in e.get("stack", [])] for e in truth if e["event"] == "kernel_stack"]
    t = tracecmd.Trace(str(STOCK_DAT))
    got = []
    while True:
        ev = t.read_next_event()
        if ev is None:
            break
        if ev.name == "kernel_stack":
            got.append(ev.stack_field(t.long_size))
    assert got == stacks and len(got) > 0


def test_bad_file_raises_upstreams_exception_with_one_line(tmp_path):
    p = tmp_path / "cut.dat"
    p.write_bytes(FULL_DAT.read_bytes()[:300_000])
    with pytest.raises(tracecmd.FileFormatError) as ei:
        tracecmd.Trace(str(p))
    assert str(p) in str(ei.value) and "\n" not in str(ei.value)


def test_instance_buffer_extension(kmem_trace):
    want = Counter(e["event"] for e in iter_report(kmem_trace, []))
    with tracecmd.Trace(str(kmem_trace)) as top:
        inst = [b for b in top.buffers if b]
    with tracecmd.Trace(str(kmem_trace), buffer=inst[0]) as t:
        count = Counter()
        while True:
            ev = t.read_next_event()
            if ev is None:
                break
            count[ev.name] += 1
    assert count == want
