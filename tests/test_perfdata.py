"""The native perf.data reader and `zlperf report perf.data` against /usr/bin/perf's own output."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import perf_truth
from conftest import DATA, FULL_PERF_DATA, FULL_PERF_KALLSYMS, REPO, requires_root
from zlperf.analysis import AnalysisOptions
from zlperf.analysis import analyze as _analyze
from zlperf.report import build_document


def analyze(reader, options=None) -> dict:
    return build_document(_analyze(reader, options))
from zlperf.errors import TraceFormatError
from zlperf.events import MISSED_EVENTS
from zlperf.readers.perfdata import PerfDataReader

requires_usr_bin_perf = pytest.mark.skipif(not os.access(perf_truth.PERF, os.X_OK), reason="no /usr/bin/perf")
pytestmark = requires_usr_bin_perf

STAT_KEYS = ("count", "sum", "min", "max", "p50", "p90", "p99")
#: What live recordings run: memory churn on two CPUs, which makes lock contention here.
WORKLOAD = [sys.executable, "-m", "zlperf.workload", "--procs", "2", "--seconds", "1"]
FORMATS = DATA / "formats"


def zlperf(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zlperf", *args], capture_output=True, text=True, check=check)


def _stats(st):
    return None if st is None else {k: st[k] for k in STAT_KEYS}


def collect(path, **kw) -> dict[str, dict[str, np.ndarray]]:
    """Every batch of the reader concatenated per event name, with seq and common columns."""
    out: dict[str, list] = {}
    with PerfDataReader(str(path), **kw) as reader:
        for chunk in reader.chunks():
            for name, b in chunk.batches.items():
                out.setdefault(name, []).append({"ts": b.ts, "cpu": b.cpu, "pid": b.pid, "seq": b.seq, **b.fields})
    return {name: {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} for name, parts in out.items()}


# -- zlperf report on the fixture equals an independent computation from perf script text ----------

@pytest.fixture(scope="module")
def report_and_truth():
    doc = json.loads(zlperf("report", "--json", "--by", "zone,caller,task", str(FULL_PERF_DATA)).stdout)
    return doc, perf_truth.expected(FULL_PERF_DATA, FULL_PERF_KALLSYMS)


def test_report_events_and_duration_match_perf_script(report_and_truth):
    doc, exp = report_and_truth
    assert doc["source"]["format"] == "perf.data"
    assert doc["events"] == exp["events"]
    assert doc["duration_ns"] == exp["duration_ns"]
    assert doc["missed_events"] == 0


def test_report_zone_numbers_match_perf_script(report_and_truth):
    doc, exp = report_and_truth
    got = {z["label"]: z for z in doc["zones"]}
    assert set(got) == set(exp["zones"])
    for label, e in exp["zones"].items():
        for key in ("contended_events", "acquisitions", "contended", "unmatched_unlocks"):
            assert got[label][key] == e[key], (label, key)
        assert _stats(got[label]["wait_ns"]) == e["wait_ns"], label
        assert _stats(got[label]["hold_ns"]) == e["hold_ns"], label
    assert doc["totals"]["unreleased"] == exp["unreleased"]


def test_report_caller_numbers_match_perf_script(report_and_truth):
    doc, exp = report_and_truth
    # The fixture's kallsyms sits beside it as full.perf.kallsyms.gz: found by convention.
    assert doc["source"]["kallsyms"] == str(FULL_PERF_KALLSYMS)
    got = {c["caller"]: c for c in doc["callers"] if c["role"] == "lock"}
    assert set(got) == set(exp["callers"])
    for caller, e in exp["callers"].items():
        for key in ("contended_events", "acquisitions"):
            assert got[caller][key] == e[key], (caller, key)
        assert _stats(got[caller]["wait_ns"]) == e["wait_ns"], caller
        assert _stats(got[caller]["hold_ns"]) == e["hold_ns"], caller


def test_report_tasks_match_perf_script_comms(report_and_truth):
    doc, exp = report_and_truth
    got = {(t["pid"], t["comm"]): t["acquisitions"] for t in doc["tasks"] if t["acquisitions"]}
    assert got == exp["acquisitions_by_task"]


# -- per-event values equal perf script's fields ----------------------------------------------------

def _print_fmt_fields(format_file: Path) -> dict[str, str]:
    """print-format key -> field name, read from the format file's `print fmt:` line."""
    line = next(li for li in format_file.read_text().splitlines() if li.startswith("print fmt:"))
    fmt, _, args = line[len("print fmt: "):].partition('", ')
    keys = re.findall(r"(\w+)=%", fmt)
    names = [m.group(1) or m.group(2) for m in re.finditer(r"REC->(\w+)|__get_str\((\w+)\)", args)]
    assert len(keys) == len(names), line
    return dict(zip(keys, names))


def test_reader_values_equal_perf_script_fields():
    samples = perf_truth.parse(FULL_PERF_DATA)
    got = collect(FULL_PERF_DATA)
    for event, cols in got.items():
        assert event != MISSED_EVENTS
        mapping = _print_fmt_fields(FORMATS / (event.replace(":", "_") + ".format"))
        mine = [s for s in samples if s.event == event]
        assert len(mine) == len(cols["ts"]), event
        # perf script is globally time-sorted; the reader per CPU. Compare each CPU's stream in order.
        order = np.lexsort((cols["seq"], cols["cpu"]))
        theirs = sorted(range(len(mine)), key=lambda i: (mine[i].cpu, mine[i].ts, i))
        for k, i in zip(order, theirs):
            s = mine[i]
            assert (int(cols["ts"][k]), int(cols["cpu"][k]), int(cols["pid"][k])) == (s.ts, s.cpu, s.tid)
            for key, fname in mapping.items():
                value = cols[fname][k]
                if isinstance(value, str):
                    assert value == s.f[key], (event, fname)
                else:
                    assert int(value) == int(s.f[key], 0), (event, fname)


def test_string_dictionary_matches_the_strings(tmp_path):
    """Interned strings (EventBatch.dictionary) decode to exactly the field, also with odd bytes."""
    buf = bytearray(FULL_PERF_DATA.read_bytes())
    at = buf.find(b"Normal\0", len(buf) // 2)
    buf[at:at + 6] = b"Nor\x01al"
    path = tmp_path / "odd.perf.data"
    path.write_bytes(bytes(buf))
    seen = set()
    with PerfDataReader(str(path), chunk_samples=20000) as reader:
        for chunk in reader.chunks():
            for b in chunk.batches.values():
                for name, (codes, values) in b.dictionary.items():
                    assert list(values[codes]) == list(b.fields[name])
                    assert len(set(values)) == len(values)
                    seen.update(values)
    assert {"Normal", "Nor\x01al"} <= seen


def test_per_cpu_stream_is_time_ordered_and_seq_contract_holds():
    last_seq: dict[int, int] = {}
    with PerfDataReader(str(FULL_PERF_DATA), chunk_samples=5000) as reader:
        nchunks = 0
        for chunk in reader.chunks():
            nchunks += 1
            rows = [(int(c), int(s), int(t)) for b in chunk.batches.values() for c, s, t in zip(b.cpu, b.seq, b.ts)]
            rows.sort()
            for cpu in {r[0] for r in rows}:
                mine = [r for r in rows if r[0] == cpu]
                assert mine[0][1] > last_seq.get(cpu, -1), "a later chunk went back in a CPU's stream"
                assert all(a[2] <= b[2] for a, b in zip(mine, mine[1:])), "per-CPU time must not decrease"
                last_seq[cpu] = mine[-1][1]
    assert nchunks > 5


def test_chunk_size_does_not_change_the_report():
    def doc(n):
        with PerfDataReader(str(FULL_PERF_DATA), chunk_samples=n) as r:
            d = analyze(r, AnalysisOptions())
        d.pop("source")
        return d
    assert doc(777) == doc(1 << 20)


def _reordered_copy(tmp_path: Path) -> Path:
    """The fixture with some samples swapped with the next one of their CPU (later sample first)."""
    buf = bytearray(FULL_PERF_DATA.read_bytes())
    d_off, d_size = struct.unpack_from("<QQ", buf, 40)
    recs = perf_truth.sample_records(bytes(buf), d_off, d_size)
    swapped = 0
    for a, b in zip(recs, recs[1:]):
        if a[0] + a[1] == b[0] and a[2] == b[2] and a[3] < b[3] and swapped < 50 and a[0] > 100_000 + swapped * 9999:
            ra, rb = bytes(buf[a[0]:a[0] + a[1]]), bytes(buf[b[0]:b[0] + b[1]])
            buf[a[0]:b[0] + b[1]] = rb + ra  # same CPU, later sample first
            swapped += 1
            recs = perf_truth.sample_records(bytes(buf), d_off, d_size) if swapped % 10 == 0 else recs
    assert swapped >= 10
    path = tmp_path / "reordered.perf.data"
    path.write_bytes(bytes(buf))
    shutil.copy(FULL_PERF_KALLSYMS, tmp_path / "reordered.perf.kallsyms.gz")
    return path


def test_reordered_file_is_sorted_per_cpu_and_gives_the_same_report(tmp_path):
    """A file whose CPU streams are not in time order (tools rewrite files) is sorted, not misread."""
    path = _reordered_copy(tmp_path)
    with PerfDataReader(str(path)) as r:
        assert r.reordered, "the reader must notice the reordering"
        got = analyze(r)
    with PerfDataReader(str(FULL_PERF_DATA)) as r:
        want = analyze(r)
    for key in ("events", "totals", "zones", "callers", "duration_ns"):
        assert got[key] == want[key], key


def test_reordered_samples_merged_from_many_sorted_runs_are_in_one_sort_order(tmp_path, monkeypatch):
    """The sort of a reordered file is done in runs merged a block at a time (bounded memory):
    tiny runs and blocks give the very samples, order and gaps of one run."""
    from zlperf.readers.perfdata import index
    path = _reordered_copy(tmp_path)
    want = collect(path, chunk_samples=3001)
    with PerfDataReader(str(path)) as r:
        want_gaps = r.gaps()
    monkeypatch.setattr(index, "RUN_SAMPLES", 997)
    monkeypatch.setattr(index, "_MERGE_SAMPLES", 500)
    monkeypatch.setattr(index, "_READ_SAMPLES", 333)
    got = collect(path, chunk_samples=3001)
    with PerfDataReader(str(path)) as r:
        assert r.reordered and r._index._bounds[1:], "several runs"
        assert r.gaps() == want_gaps
    assert got.keys() == want.keys()
    for name in want:
        for col in want[name]:
            assert np.array_equal(got[name][col], want[name][col]), (name, col)


def test_lost_records_become_missed_events_and_break_pairs(tmp_path):
    """A sample overwritten by a PERF_RECORD_LOST (as the kernel reports an overrun) is a gap on its CPU."""
    path = tmp_path / "lost.perf.data"
    recs, cpu = perf_truth.write_with_lost(FULL_PERF_DATA, path, lost=7)
    text = subprocess.run([perf_truth.PERF, "script", "-i", str(path), "--show-lost-events"],
                          capture_output=True, text=True).stdout
    assert "LOST" in text.upper()
    assert len(perf_truth.parse(path)) == len(recs) - 1
    cols = collect(path, kallsyms=str(FULL_PERF_KALLSYMS))
    missed = cols[MISSED_EVENTS]
    assert missed["count"].tolist() == [7] and missed["cpu"].tolist() == [cpu]
    with PerfDataReader(str(path), kallsyms=str(FULL_PERF_KALLSYMS)) as r:
        doc = analyze(r)
    assert doc["missed_events"] == 7 and doc["missed_by_cpu"] == {str(cpu): 7}
    # Expected from the original file's perf script text: the gap's neighbours on its CPU.
    victim = recs[len(recs) // 2]
    stream = [x for x in perf_truth.parse(FULL_PERF_DATA) if x.cpu == cpu]
    at = next(i for i, x in enumerate(stream) if x.ts == victim[3])
    before, lost, after = stream[at - 1].event, stream[at].event, stream[at + 1].event
    locked, unlock = "kmem:mm_zone_locked", "kmem:mm_zone_lock_unlock"
    assert doc["totals"]["broken_by_missed"] == (before == locked) + (after == unlock)
    with PerfDataReader(str(FULL_PERF_DATA)) as r:
        holds_before = analyze(r)["totals"]["hold_ns"]["count"]
    lost_pairs = (lost == unlock and before == locked) + (lost == locked and after == unlock)
    assert doc["totals"]["hold_ns"]["count"] == holds_before - lost_pairs - (before == locked and lost != unlock) \
        - (after == unlock and lost != locked)


# -- symbols --------------------------------------------------------------------------------------

def test_kallsyms_conventions(tmp_path):
    copy = tmp_path / "run.perf.data"
    shutil.copy(FULL_PERF_DATA, copy)
    # Nothing beside it, recorded on another host: warn and show addresses.
    res = zlperf("report", "--json", str(copy))
    doc = json.loads(res.stdout)
    assert doc["source"]["kallsyms"] is None
    assert any("no kallsyms" in w for w in doc["warnings"])
    assert all(c["caller"].startswith("0x") for c in doc["callers"])
    # --kallsyms wins, and the missing-table warning does not appear.
    doc = json.loads(zlperf("report", "--json", "--kallsyms", str(FULL_PERF_KALLSYMS), str(copy)).stdout)
    assert doc["source"]["kallsyms"] == str(FULL_PERF_KALLSYMS)
    assert not any("no kallsyms" in w for w in doc["warnings"])
    # zlperf record's convention: FILE.kallsyms beside the perf.data.
    shutil.copy(FULL_PERF_KALLSYMS, tmp_path / "run.perf.data.kallsyms.gz")
    doc = json.loads(zlperf("report", "--json", str(copy)).stdout)
    assert doc["source"]["kallsyms"] == str(tmp_path / "run.perf.data.kallsyms.gz")
    assert not doc["warnings"]
    # A table from another boot (this host's) is used only with a warning that it may not match.
    if os.access("/proc/kallsyms", os.R_OK) and os.geteuid() == 0:
        doc = json.loads(zlperf("report", "--json", "--kallsyms", "/proc/kallsyms", str(copy)).stdout)
        assert any("may not match" in w for w in doc["warnings"])


# -- bad input ------------------------------------------------------------------------------------

def _one_line_error(res: subprocess.CompletedProcess, path) -> str:
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert lines[0].startswith("zlperf: ") and str(path) in lines[0]
    return lines[0]


@pytest.mark.parametrize("cut", [8, 50, 2000, 3_000_000, 5_630_000])
def test_truncated_perf_data_is_one_clear_line(tmp_path, cut):
    path = tmp_path / "cut.perf.data"
    path.write_bytes(FULL_PERF_DATA.read_bytes()[:cut])
    line = _one_line_error(zlperf("report", str(path), check=False), path)
    assert "truncated" in line or "cut off" in line


def test_wrong_magic_is_one_clear_line(tmp_path):
    path = tmp_path / "bad.perf.data"
    path.write_bytes(b"PERFILE3" + FULL_PERF_DATA.read_bytes()[8:4096])
    with pytest.raises(TraceFormatError, match="not a perf.data file"):
        PerfDataReader(str(path))
    _one_line_error(zlperf("report", str(path), check=False), path)


def test_damaged_data_section_warns_and_keeps_what_it_read(tmp_path):
    buf = bytearray(FULL_PERF_DATA.read_bytes())
    d_off, d_size = struct.unpack_from("<QQ", buf, 40)
    recs = perf_truth.sample_records(bytes(buf), d_off, d_size)
    pos = recs[len(recs) // 2][0]
    struct.pack_into("<IHH", buf, pos, 9, 0, 3)  # a record size that cannot be
    path = tmp_path / "damaged.perf.data"
    path.write_bytes(bytes(buf))
    with PerfDataReader(str(path)) as r:
        n = sum(len(b) for c in r.chunks() for b in c.batches.values())
        assert any("damaged" in w for w in r.info.warnings)
    assert 0 < n < len(recs)


# -- a live recording on this machine's stock kernel ------------------------------------------------

@pytest.mark.live
@requires_root
@pytest.mark.parametrize("compress", [[], ["-z"]], ids=["plain", "zstd"])
def test_live_perf_record_with_call_chains_reads_back_like_perf_script(tmp_path, compress):
    path = tmp_path / "live.perf.data"
    rec = subprocess.run([perf_truth.PERF, "record", "-q", *compress, "-e", "lock:contention_begin",
                          "-e", "lock:contention_end", "-a", "-g", "-o", str(path), "--", *WORKLOAD],
                         capture_output=True, text=True, cwd=REPO)
    if rec.returncode != 0:
        pytest.skip(f"perf record refused here: {rec.stderr.strip()[:200]}")
    samples = perf_truth.parse(path, callchains=True)
    got = collect(path)
    counts = {name: len(c["ts"]) for name, c in got.items() if name != MISSED_EVENTS}
    want = {}
    for s in samples:
        want[s.event] = want.get(s.event, 0) + 1
    assert counts == want
    assert sum(want.values()) > 0, "no lock contention at all in one second: nothing was compared"
    for event, cols in got.items():
        if event == MISSED_EVENTS:
            continue
        mine = sorted((int(c), int(t), int(p), int(a), tuple(int(x) for x in cc))
                      for c, t, p, a, cc in zip(cols["cpu"], cols["ts"], cols["pid"], cols["lock_addr"],
                                                cols["common_callchain"]))
        theirs = sorted((s.cpu, s.ts, s.tid, int(s.rest.split()[0], 16), perf_truth.kernel_frames(s.frames))
                        for s in samples if s.event == event)
        assert len(mine) == len(theirs)
        for m, t in zip(mine, theirs):
            assert m[:4] == t[:4], event
            assert m[4] in t[4], (event, m, t)
    # And the report counts the same events perf script printed.
    doc = json.loads(zlperf("report", "--json", str(path)).stdout)
    assert doc["events"] == want


@pytest.mark.live
@requires_root
def test_zlperf_record_perf_backend_goes_straight_through(tmp_path):
    """`zlperf record --backend perf` output: its saved kallsyms is found, counts equal perf script's."""
    path = tmp_path / "rec.perf.data"
    rec = zlperf("record", "--profile", "stock", "--backend", "perf", "-o", str(path), "--", *WORKLOAD,
                 check=False)
    if rec.returncode != 0 or not path.exists():
        pytest.skip(f"zlperf record --backend perf did not record here: {rec.stderr.strip()[-200:]}")
    doc = json.loads(zlperf("report", "--json", str(path)).stdout)
    saved = [p for p in tmp_path.iterdir() if ".kallsyms" in p.name]
    assert saved and doc["source"]["kallsyms"] == str(saved[0])
    assert not any("kallsyms" in w for w in doc["warnings"]), doc["warnings"]
    want: dict[str, int] = {}
    for s in perf_truth.parse(path):
        want[s.event] = want.get(s.event, 0) + 1
    assert sum(want.values()) > 0, "the workload made no lock contention: nothing compared"
    assert doc["events"] == want


def test_events_argument_limits_what_is_decoded():
    with PerfDataReader(str(FULL_PERF_DATA)) as reader:
        names = {name for chunk in reader.chunks(events=["kmem:mm_zone_locked"]) for name in chunk.batches}
        assert names == {"kmem:mm_zone_locked"}
    evlist = subprocess.run([perf_truth.PERF, "evlist", "-i", str(FULL_PERF_DATA)], capture_output=True,
                            text=True, check=True).stdout.split()
    assert set(reader.info.formats) == {e for e in evlist if re.fullmatch(r"\w+:\w+", e) and not e.startswith("dummy:")}


def test_kernel_frames_shared_per_distinct_chain_and_in_slices(monkeypatch):
    """Call chains taken apart in slices, samples with one chain sharing its array: per sample, exactly the
    kernel frames a frame-by-frame reading gives (markers dropped, user frames left out)."""
    from zlperf.readers.perfdata import samples

    kernel, user = 2**64 - 128, 2**64 - 512
    rng = np.random.default_rng(7)
    protos = []
    for _ in range(9):
        chain = [kernel] + [int(x) for x in rng.integers(2**63, 2**64 - 2**20, int(rng.integers(0, 6)), np.uint64)]
        if rng.random() < 0.5:
            chain += [user] + [int(x) for x in rng.integers(1, 2**40, 3, np.uint64)]
        protos.append(chain)
    protos.append([])  # no frames at all
    protos.append([int(x) for x in rng.integers(2**63, 2**64 - 2**20, 3, np.uint64)])  # no marker: kernel half
    words, at, nr, want = [], [], [], []
    for i in range(500):
        chain = protos[int(rng.integers(0, len(protos)))]
        at.append(len(words))
        words += [len(chain)] + chain
        nr.append(len(chain))
        ctx, kept = None, []
        for f in chain:
            if f >= 2**64 - 4095:
                ctx = f
            elif ctx == kernel or (ctx is None and f >= 2**63):
                kept.append(f)
        want.append(kept)
    words_a = np.array(words, dtype=np.uint64)
    monkeypatch.setattr(samples, "_CHAIN_SAMPLES", 64)
    got = samples._kernel_frames(words_a, np.array(at, np.int64), np.array(nr, np.int64))
    assert [list(map(int, g)) for g in got] == want
    assert len({id(g) for g in got}) < 200  # shared per distinct chain (within each slice)
