"""The kernel lab (lab/): fast checks of its pieces by default; `pytest -m lab` boots the guest end to end.

Expectations come from independent sources: the tracefs format files recorded on the fixture kernel
(tests/data/formats), the kernel's own Kconfig/.config, GNU patch, and the host's trace-cmd report.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DATA, REPO, have_tool

LAB = REPO / "lab"
CACHE = LAB / "cache"
FRAGMENT = LAB / "config" / "zlperf.config"
PATCH1 = LAB / "patches" / "zone-lock-tracepoints-6.12.patch"
PATCH2 = LAB / "patches" / "zone-lock-series-6.12.patch"
KERNEL = CACHE / "kernels" / "zone-lock"  # a link to zone-lock-KEY once lab/build-kernel ran
# lab/build-kernel unpacks into build/VARIANT-KEY/linux-source-6.12 (patched) and keeps the files the
# patches touch, as they were, in build/VARIANT-KEY/pristine.
BUILD = CACHE / "build" / (KERNEL.resolve().name if KERNEL.is_symlink() else "none")
SOURCE = BUILD / "linux-source-6.12"
PRISTINE = BUILD / "pristine"

sys.path.insert(0, str(LAB))
import lab as labmod  # noqa: E402  (lab/lab.py, the lab's host-side module)
import lab_overhead  # noqa: E402


def _fragment() -> dict:
    """The fragment as {CONFIG_X: value}, 'n' for '# CONFIG_X is not set'; fails on any other line."""
    opts = {}
    for n, line in enumerate(FRAGMENT.read_text().splitlines(), 1):
        s = line.strip()
        m = re.fullmatch(r"(CONFIG_\w+)=(.+)", s) or re.fullmatch(r"# (CONFIG_\w+) is not set()", s)
        if m:
            assert m.group(1) not in opts, f"{FRAGMENT.name}:{n}: {m.group(1)} given twice"
            opts[m.group(1)] = m.group(2) or "n"
        else:
            assert s == "" or (s.startswith("#") and "CONFIG_" not in s.split()[1:2]), f"{FRAGMENT.name}:{n}: {line!r}"
    return opts


# ---------------------------------------------------------------- config fragment

def test_config_fragment_is_sane():
    opts = _fragment()
    # What the lab guest needs: NUMA, tracing, perf, an initramfs and 9p; BPF with BTF (bpftrace without kernel
    # headers) and hist triggers for the peers.
    for need in ("CONFIG_NUMA", "CONFIG_FTRACE", "CONFIG_STACKTRACE", "CONFIG_KALLSYMS_ALL", "CONFIG_PERF_EVENTS",
                 "CONFIG_BLK_DEV_INITRD", "CONFIG_NET_9P_VIRTIO", "CONFIG_9P_FS", "CONFIG_BPF_SYSCALL",
                 "CONFIG_BPF_JIT", "CONFIG_BPF_EVENTS", "CONFIG_DEBUG_INFO_BTF", "CONFIG_HIST_TRIGGERS"):
        assert opts.get(need) == "y", f"{need} must be y in {FRAGMENT}"
    # BTF is made from DWARF by pahole: debug info on, neither reduced nor split (DEBUG_INFO_BTF depends on it).
    assert opts.get("CONFIG_DEBUG_INFO_NONE") == "n" and opts.get("CONFIG_DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT") == "y"
    assert opts.get("CONFIG_DEBUG_INFO_REDUCED", "n") == "n" and opts.get("CONFIG_DEBUG_INFO_SPLIT", "n") == "n"
    # BPF_EVENTS depends on KPROBE_EVENTS or UPROBE_EVENTS.
    assert "y" in (opts.get("CONFIG_KPROBE_EVENTS"), opts.get("CONFIG_UPROBE_EVENTS"))


@pytest.mark.skipif(not SOURCE.is_dir(), reason="lab/cache has no linux-source-6.12 (run lab/build-kernel)")
def test_config_fragment_symbols_exist_in_kconfig():
    symbols = set()
    for kconfig in SOURCE.rglob("Kconfig*"):
        symbols.update(re.findall(r"^\s*(?:menu)?config\s+(\w+)", kconfig.read_text(errors="replace"), re.M))
    unknown = [k for k in _fragment() if k[len("CONFIG_"):] not in symbols]
    assert not unknown, f"not Kconfig symbols of 6.12: {unknown}"


@pytest.mark.skipif(not (KERNEL / "config").exists(), reason="no lab kernel built yet (lab/build-kernel)")
def test_built_config_kept_the_fragment():
    final = {}
    for line in (KERNEL / "config").read_text().splitlines():
        m = re.fullmatch(r"(CONFIG_\w+)=(.+)", line) or re.fullmatch(r"# (CONFIG_\w+) is not set()", line)
        if m:
            final[m.group(1)] = m.group(2) or "n"
    for key, want in _fragment().items():
        if want == "n":
            assert final.get(key, "n") == "n", f"{key} should be off in the built kernel"
    # What lab/build-kernel insists on (its REQUIRED list) must be in the built config.
    required = re.search(r"REQUIRED=\((.*?)\)", (LAB / "build-kernel").read_text(), re.S).group(1).split()
    assert required and "CONFIG_EVENT_TRACING=y" in required
    for opt in required:
        key, want = opt.split("=")
        assert final.get(key) == want, f"{opt} missing from the built kernel's config"


# ---------------------------------------------------------------- patches

def _hunks_ok(patch: Path) -> int:
    """Check every hunk's line counts against its @@ header; returns the number of hunks."""
    lines = patch.read_text().splitlines()
    hunks, i = 0, 0
    while i < len(lines):
        m = re.match(r"@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@", lines[i])
        if not m:
            i += 1
            continue
        old = int(m.group(1) if m.group(1) is not None else 1)
        new = int(m.group(2) if m.group(2) is not None else 1)
        i += 1
        while old > 0 or new > 0:
            tag = lines[i][:1] if lines[i] else " "
            assert tag in " +-\\", f"{patch.name}:{i + 1}: unexpected line in hunk: {lines[i]!r}"
            if tag in " -":
                old -= 1
            if tag in " +":
                new -= 1
            i += 1
        assert old == 0 and new == 0, f"{patch.name}: hunk ending at line {i} has wrong counts"
        hunks += 1
    return hunks


@pytest.mark.parametrize("patch", [PATCH1, PATCH2], ids=lambda p: p.name)
def test_patch_is_well_formed(patch):
    assert _hunks_ok(patch) > 0
    files = re.findall(r"^\+\+\+ b/(\S+)", patch.read_text(), re.M)
    assert "mm/page_alloc.c" in files


def _recorded_format(event: str) -> tuple:
    """(fields, print fmt) of ``event`` from the format file recorded on the fixture kernel."""
    text = (DATA / "formats" / f"kmem_{event}.format").read_text()
    fields = re.findall(r"field:(.+?) (\w+)(?:\[\d*\])?;\s+offset", text)
    fields = [(t, n) for t, n in fields if not n.startswith("common_")]
    fmt = re.search(r'print fmt: "(.*?)", ', text).group(1)
    return fields, fmt


def _patch_event(event: str) -> tuple:
    """(fields, print fmt) of TRACE_EVENT(``event``) as written in the lab patch."""
    added = "\n".join(ln[1:] for ln in PATCH1.read_text().splitlines() if ln.startswith("+"))
    body = re.search(rf"TRACE_EVENT\({event},(.*?)\n\);", added, re.S).group(1)
    entry = re.search(r"TP_STRUCT__entry\((.*?)\n\t\)", body, re.S).group(1)
    fields = []
    for kind, args in re.findall(r"__(field|string)\(\s*(.*?)\s*\)", entry):
        parts = [a.strip() for a in args.split(",")]
        # tracefs shows __string(name, src) as "__data_loc char[] name"
        fields.append(("__data_loc char[]", parts[0]) if kind == "string" else (parts[0], parts[1]))
    fmt = re.search(r'TP_printk\("(.*?)"', body, re.S).group(1)
    return fields, fmt


@pytest.mark.parametrize("event", ["mm_zone_lock_contended", "mm_zone_locked", "mm_zone_lock_unlock"])
def test_patch_matches_the_recorded_abi(event):
    """Same fields, types, order and print format as the kernel the fixtures were recorded on."""
    assert _patch_event(event) == _recorded_format(event)


def test_patch_covers_the_three_call_sites():
    text = PATCH1.read_text()
    for fn in ("free_pcppages_bulk", "free_one_page", "rmqueue_bulk"):
        assert re.search(rf"^@@ .*@@.*\b{fn}\(", text, re.M) or fn in text, fn
    replaced = re.findall(r"^-\s*spin_lock_irqsave\(&zone->lock, flags\);\n\+\s*__zone_lock\(", text, re.M)
    unlocked = re.findall(r"^-\s*spin_unlock_irqrestore\(&zone->lock, flags\);\n\+\s*__zone_unlock\(", text, re.M)
    assert len(replaced) == 3 and len(unlocked) == 3


def test_series_patch_has_the_rival_events():
    added = "\n".join(ln[1:] for ln in PATCH2.read_text().splitlines() if ln.startswith("+"))
    assert "#define TRACE_SYSTEM zone_lock" in added
    for ev in ("zone_lock_start_locking", "zone_lock_acquire_returned", "zone_lock_released"):
        assert re.search(rf"(DEFINE_EVENT\(zone_lock, {ev},|TRACE_EVENT\({ev},)", added), ev
        assert f"trace_{ev}(zone" in added, f"{ev} is never fired"
    assert 'TP_printk("zone=%p", ' in added and 'TP_printk("zone=%p success=%s"' in added


@pytest.mark.skipif(not PRISTINE.is_dir() or not have_tool("patch"), reason="no lab build (lab/build-kernel) or no patch")
def test_patches_apply_to_the_cached_source(tmp_path):
    """Both patches apply, exactly (no offset, no fuzz), to the files as Debian's 6.12 source has them;
    the series on top of the first."""
    for rel in ("mm/page_alloc.c", "include/trace/events/kmem.h"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PRISTINE / rel, tmp_path / rel)
    for patch in (PATCH1, PATCH2):
        r = subprocess.run(["patch", "-p1", "-i", str(patch)], cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "fuzz" not in r.stdout and "offset" not in r.stdout and "FAILED" not in r.stdout, r.stdout
    # ... and the build tree is the pristine source with the first patch applied.
    assert (tmp_path / "include/trace/events/kmem.h").read_text().count("TRACE_EVENT(mm_zone_lock") == \
        (SOURCE / "include/trace/events/kmem.h").read_text().count("TRACE_EVENT(mm_zone_lock") == 3


# ---------------------------------------------------------------- scripts

def test_build_kernel_dry_run_and_cache_key():
    out = subprocess.run([str(LAB / "build-kernel"), "--dry-run"], capture_output=True, text=True, check=True).stdout
    series = subprocess.run([str(LAB / "build-kernel"), "--dry-run", "--series"], capture_output=True, text=True,
                            check=True).stdout
    key = re.search(r"^key:\s+(\w+)", out, re.M).group(1)
    assert re.search(r"^variant:\s+zone-lock$", out, re.M) and re.search(r"^variant:\s+series$", series, re.M)
    assert key != re.search(r"^key:\s+(\w+)", series, re.M).group(1), "the series build must not share the cache"
    assert PATCH2.name not in out and PATCH2.name in series
    # The key a dry run shows is the key of the build lab/run will look for: once a kernel is built, they
    # are the same (the key once changed when apt installed linux-source after it was computed).
    if KERNEL.is_symlink():
        assert KERNEL.resolve().name == f"zone-lock-{key}", "lab/build-kernel's key changed since the build"
        assert re.search(r"^cached:\s+yes", out, re.M)


@pytest.mark.parametrize("cmd", [["run"], ["overhead"], ["fixtures"]])
def test_lab_commands_help_and_dry_run(cmd, tmp_path):
    exe = [sys.executable, str(LAB / cmd[0])]
    assert subprocess.run(exe + ["--help"], capture_output=True, text=True).returncode == 0
    r = subprocess.run(exe + ["--dry-run", "--out" if cmd[0] != "fixtures" else "--dest", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "qemu-system-x86_64" in r.stdout and "tsc=reliable" in r.stdout
    assert "sockets=2" in r.stdout and "nodeid=1" in r.stdout  # two NUMA nodes
    assert not (tmp_path / "o").exists(), "a dry run must not create results"


def test_qemu_command_rejects_odd_cpu_counts():
    with pytest.raises(labmod.LabError):
        labmod.qemu_command(Path("k"), Path("i"), Path("s"), cpus=3)


@pytest.mark.skipif(not have_tool("gcc"), reason="no C compiler")
def test_workload_builds_and_reports_throughput(tmp_path):
    exe = tmp_path / "zl-workload"
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(exe), str(LAB / "workload.c")], check=True)
    r = subprocess.run([str(exe), "-p", "1", "-m", "1", "-s", "0.3"], capture_output=True, text=True, check=True)
    doc = json.loads(r.stdout)
    assert doc["procs"] == 1 and doc["rounds"] > 0 and doc["threads"] == 0
    assert abs(doc["rounds_per_s"] - doc["rounds"] / doc["seconds"]) < 0.01 * doc["rounds_per_s"] + 0.01
    assert subprocess.run([str(exe), "-p", "0"], capture_output=True).returncode == 2
    # The peer tasks' shape: threads, an idle lead-in and lead-out, the result also in a file, CLOCK_MONOTONIC times.
    r = subprocess.run([str(exe), "-t", "-p", "2", "-m", "1", "-s", "0.2", "-l", "0.1", "-o", str(tmp_path / "w.json")],
                       capture_output=True, text=True, check=True)
    doc = json.loads((tmp_path / "w.json").read_text())
    assert doc == json.loads(r.stdout) and doc["threads"] == 1 and doc["rounds"] > 0
    mono = doc["mono_ns"]
    assert mono["work_start"] - mono["start"] >= 0.1e9 and mono["end"] - mono["work_end"] >= 0.1e9
    assert 0.2e9 <= mono["work_end"] - mono["work_start"] < 5e9
    # Pipe resizers: 16 MiB pipes need CAP_SYS_RESOURCE (root in the guest); a sandbox without it gets one line.
    r = subprocess.run([str(exe), "-p", "1", "-P", "1", "-m", "1", "-s", "0.2"], capture_output=True, text=True)
    if r.returncode == 0:
        assert json.loads(r.stdout)["resizes"] > 0
    else:
        assert r.returncode == 1 and "F_SETPIPE_SZ" in r.stderr and "CAP_SYS_RESOURCE" in r.stderr


def test_overhead_table_ratios():
    import random

    rng = random.Random(7)
    runs = [{"profile": p, "run": i, "rounds_per_s": rng.uniform(50, 100)}
            for p in lab_overhead.OVERHEAD_PROFILES for i in range(5)]
    info = {"kernel": "k", "variant": "zone-lock", "cpus": 4, "tcg_thread": "multi", "workload": "w",
            "pcp_fraction": 1, "zlperf_version": "v", "zlperf_git": "g", "run": "r", "date": "d"}
    text = lab_overhead.overhead_table(runs, info)
    assert "TCG" in text
    base = statistics.median(r["rounds_per_s"] for r in runs if r["profile"] == "none")
    for prof in lab_overhead.OVERHEAD_PROFILES:
        med = statistics.median(r["rounds_per_s"] for r in runs if r["profile"] == prof)
        row = re.search(rf"^\| {prof} \|.*?\| 5 \| ([\d.]+) \|", text, re.M)
        assert row and float(row.group(1)) == pytest.approx(med / base, abs=0.0006)
    with pytest.raises(labmod.LabError):
        lab_overhead.overhead_table([r for r in runs if r["profile"] != "none"], info)


# ---------------------------------------------------------------- the peer table (lab/lab_peers.py)

import lab_peers  # noqa: E402


def test_bucket_labels_are_bpftraces():
    # bpftrace's hist() and zlperf's hist_log2 share buckets: 0, 1, [2, 4), [4, 8) ... (bit length of the value)
    assert [lab_peers.bucket_label(k) for k in (0, 1, 2, 3, 11, 12, 21, 31)] == [
        "[0]", "[1]", "[2, 4)", "[4, 8)", "[1K, 2K)", "[2K, 4K)", "[1M, 2M)", "[1G, 2G)"]
    assert [lab_peers._bucket(v) for v in (0, 1, 2, 3, 4, 1023, 1024)] == [0, 1, 2, 2, 3, 10, 11]


def _hist_block(trigger: str, rows: list, dropped: int = 0) -> str:
    """A tracefs hist file block, printed with the kernel's formats (kernel/trace/trace_events_hist.c)."""
    out = f"# event histogram\n#\n# trigger info: {trigger} [active]\n#\n\n"
    for keys, hits in rows:
        parts = []
        for k, v in keys:
            if k == "common_timestamp":
                parts.append(f"{k}: ~ {v}-{v + 49_999_999}")
            elif k == "name":
                parts.append(f"{k}: {v:<50s}")
            else:
                parts.append(f"{k}: {v:10d}")
        out += "{ " + ", ".join(parts) + " }" + f" hitcount: {hits:10d}\n"
    return out + f"\nTotals:\n    Hits: {sum(h for _, h in rows)}\n    Entries: {len(rows)}\n    Dropped: {dropped}\n\n"


def test_hist_and_bpftrace_outputs_are_summed_over_the_window(tmp_path):
    slot = 50_000_000
    w = lab_peers.Window(since=2 * slot, until=4 * slot, gap_since=0, gap_until=0)  # slots 2 and 3
    trig = lab_peers.hist_triggers if hasattr(lab_peers, "hist_triggers") else None
    assert trig is None  # the triggers are the guest's (lab/guest/peers.py); only their output is read here
    zone_rows = [([("common_timestamp", s * slot), ("node_id", 0), ("name", "Normal")], 10 + s) for s in range(6)]
    (tmp_path / "hist-mm_zone_lock_contended.txt").write_text(
        _hist_block(f"hist:keys=common_timestamp.buckets={slot},node_id,name:vals=hitcount:sort=hitcount:size=16384:clock=mono",
                    zone_rows))
    (tmp_path / "hist-mm_zone_locked.txt").write_text(
        _hist_block(f"hist:keys=common_timestamp.buckets={slot},node_id,name:vals=hitcount:size=16384:clock=mono if contended == 0",
                    zone_rows)
        + _hist_block(f"hist:keys=common_timestamp.buckets={slot},node_id,name:vals=hitcount:size=16384:clock=mono if contended == 1",
                      [([("common_timestamp", 3 * slot), ("node_id", 1), ("name", "DMA32")], 2)])
        + _hist_block(f"hist:keys=common_timestamp.buckets={slot},wait_ns:vals=hitcount:size=32768:clock=mono if contended == 1",
                      [([("common_timestamp", 3 * slot), ("wait_ns", 1500)], 1),
                       ([("common_timestamp", 3 * slot), ("wait_ns", 2047)], 1),
                       ([("common_timestamp", 5 * slot), ("wait_ns", 9)], 4)]))
    (tmp_path / "hist-mm_zone_lock_unlock.txt").write_text(
        _hist_block(f"hist:keys=common_timestamp.buckets={slot},node_id,name:vals=hitcount:size=16384:clock=mono", []))
    got = lab_peers.hist_counts(tmp_path, w)
    assert got == {("mm_zone_lock_contended", "0:Normal"): 12 + 13, ("mm_zone_locked contended=0", "0:Normal"): 25,
                   ("mm_zone_locked contended=1", "1:DMA32"): 2, ("holders: waits", "all"): 2,
                   ("wait_ns", "[1K, 2K)"): 2}
    (tmp_path / "hist-mm_zone_lock_unlock.txt").write_text(
        _hist_block("hist:keys=x:vals=hitcount:clock=mono", [], dropped=3))
    with pytest.raises(lab_peers.PeerError, match="dropped 3"):
        lab_peers.hist_counts(tmp_path, w)
    # A hist trigger without clock=mono stamps with the global clock (its default): not comparable, refused.
    (tmp_path / "hist-mm_zone_lock_unlock.txt").write_text(
        _hist_block("hist:keys=x:vals=hitcount:size=16384:clock=global", []))
    with pytest.raises(lab_peers.PeerError, match="mono"):
        lab_peers.hist_counts(tmp_path, w)
    # bpftrace -f json: one line per map at exit, keys joined by commas, slots = nsecs / slot.
    bt = tmp_path / "bpftrace.json"
    bt.write_text("\n".join(json.dumps(d) for d in [
        {"type": "attached_probes", "data": {"probes": 3}},
        {"type": "map", "data": {"@contended": {"0,Normal,1": 5, "0,Normal,2": 7, "1,Normal,3": 1, "0,Normal,4": 9}}},
        {"type": "map", "data": {"@locked": {"0,Normal,0,2": 4, "0,Normal,1,3": 2, "0,Normal,1,9": 2}}},
        {"type": "map", "data": {"@unlock": {}}},
        {"type": "hist", "data": {"@wait_ns": {"3": [{"min": 1024, "max": 2047, "count": 2}],
                                               "7": [{"min": 4, "max": 7, "count": 1}]}}}]) + "\n")
    assert lab_peers.bpftrace_counts(bt, w, slot) == {
        ("mm_zone_lock_contended", "0:Normal"): 7, ("mm_zone_lock_contended", "1:Normal"): 1,
        ("mm_zone_locked contended=0", "0:Normal"): 4, ("mm_zone_locked contended=1", "0:Normal"): 2,
        ("holders: waits", "all"): 2, ("wait_ns", "[1K, 2K)"): 2}


def test_window_edges_go_where_no_event_is():
    slot = 10
    wl = {"mono_ns": {"start": 3, "work_start": 47, "work_end": 103, "end": 151}}
    # Candidates: 10..40 before the work, 110..150 after; events crowd 20 and 130.
    times = [19, 21, 30, 60, 80, 129, 131, 140]
    w = lab_peers.choose_window(times, wl, slot)
    assert (w.since, w.until) == (40, 110) and (w.gap_since, w.gap_until) == (10, 19)
    # ... and never while a lock is held: a hold from 35 to 45 rules 40 out (30 is 0 from an event, 10 is 9).
    w = lab_peers.choose_window(times, wl, slot, held=[(35, 45)])
    assert (w.since, w.gap_since) == (10, 9)
    with pytest.raises(lab_peers.PeerError, match="held across"):
        lab_peers.choose_window(times, wl, slot, held=[(5, 200)])
    with pytest.raises(lab_peers.PeerError, match="lead"):
        lab_peers.choose_window(times, {"mono_ns": {"start": 41, "work_start": 47, "work_end": 103, "end": 109}}, slot)


def test_holder_rules_on_a_crafted_stream():
    E = lab_peers.Event
    L, U = "mm_zone_locked", "mm_zone_lock_unlock"
    events = [
        E(100, 0, L, "0:Normal"), E(150, 0, U, "0:Normal"),            # holder on CPU 0, released at 150
        E(160, 1, L, "0:Normal", True, 30),                            # waited 130..160: held by CPU 0 -> traced
        E(170, 1, U, "0:Normal"),
        E(175, 2, L, "0:Normal", True, 2),                             # waited 173..175; the last release (170)
        E(180, 2, U, "0:Normal"),                                      # is older: not traced
        E(200, 3, L, "0:Normal", True, 50),                            # behind CPU 2's release (180), whose
        E(210, 3, U, "0:Normal"),                                      # acquisition was contended: a hand-off
    ]
    got = lab_peers.trace_cmd_counts(events, lab_peers.Window(0, 1000, 0, 0))
    assert got[("holders: waits", "all")] == 3 and got[("holders: not traced", "all")] == 1
    assert got[("holders: handed off", "all")] == 1


def test_independent_counts_equal_zlperf_on_a_shared_fixture():
    """The lab's own counting (trace-cmd text, holder rules as loops) and zlperf agree row for row on a real
    hold-time recording, over a window whose edges are between events."""
    from conftest import FULL_V6_DAT

    if not have_tool("trace-cmd"):
        pytest.skip("no trace-cmd")
    events, lost = lab_peers.parse_trace_cmd(FULL_V6_DAT)
    times = sorted(e.ts for e in events)
    held = lab_peers.held_intervals(events)
    # Edges in the middle of the widest gaps between events where no lock is held: nothing straddles them.
    mids = sorted(((times[i] - times[i - 1], (times[i] + times[i - 1]) // 2) for i in range(1, len(times))),
                  reverse=True)
    free = list(itertools.islice((x for _, x in mids if not any(a < x < b for a, b in held)), 2))
    w = lab_peers.Window(min(free), max(free), 0, 0)
    assert w.until - w.since > 0.5e9
    mine = lab_peers.trace_cmd_counts(events, w)
    zl, doc, cmd = lab_peers.zlperf_counts(FULL_V6_DAT, w, lab_peers.PROFILE_EVENTS["hold-time"])
    assert lost == 0 and "--since" in cmd
    assert mine[("holders: waits", "all")] > 0 and mine[("holders: not traced", "all")] > 0
    assert {r: v for r, v in mine.items() if v} == {r: v for r, v in zl.items() if v}


# ---------------------------------------------------------------- the lab's fixtures (tests/data/lab/)

LAB_DATA = DATA / "lab"
LAB_RECORDINGS = sorted(LAB_DATA.glob("*.dat")) + sorted(LAB_DATA.glob("*.data"))


def _lab_section() -> str:
    import lab_fixtures

    text = (DATA / "PROVENANCE.md").read_text()
    assert lab_fixtures.BEGIN in text and lab_fixtures.END in text, "PROVENANCE.md lacks the lab section"
    return text[text.index(lab_fixtures.BEGIN):text.index(lab_fixtures.END)]


@pytest.mark.skipif(not LAB_RECORDINGS, reason="no lab fixtures installed (lab/fixtures --install)")
def test_lab_fixtures_were_made_by_zlperf_record():
    section = _lab_section()
    for path in LAB_RECORDINGS:
        row = re.search(rf"^\| {re.escape(path.name)} \| `(zlperf record [^`]+)`[^|]* \| (\w+) \|", section, re.M)
        assert row, f"{path.name}: no provenance row naming its zlperf record command"
        assert labmod._sha256(path).startswith(row.group(2)), f"{path.name} changed since its provenance was written"
    # The shared fixtures stay: tests and docs rely on them byte for byte.
    for shared in ("full.v6.dat", "wait.dat", "minimal.dat", "full.perf.data"):
        assert (DATA / shared).exists()


@pytest.mark.parametrize("path", [p for p in LAB_RECORDINGS if p.suffix == ".dat"], ids=lambda p: p.name)
def test_lab_fixture_counts_equal_the_host_trace_cmd(path):
    if not have_tool("trace-cmd"):
        pytest.skip("no trace-cmd")
    r = subprocess.run([sys.executable, "-m", "zlperf", "report", "--json", str(path)], capture_output=True, text=True,
                       cwd=REPO, check=True)
    events = json.loads(r.stdout)["events"]
    host = _host_counts(path)
    assert events and {k.split(":")[-1]: v for k, v in events.items()} == \
        {k: v for k, v in host.items() if k.startswith(("mm_zone", "contention_"))}


@pytest.mark.skipif(not (LAB_DATA / "peers-hold-time.json").exists(), reason="no lab peer fixture installed")
def test_peer_fixture_zlperf_still_equals_bpftrace_and_hist_triggers():
    """The lab's peer table of a real hold-time recording (made with bpftrace and hist triggers counting beside
    `zlperf record`): today's zlperf, over the same window of the same file, still gives the peers' numbers."""
    table = json.loads((LAB_DATA / "peers-hold-time.json").read_text())
    assert table["ok"]
    w = lab_peers.Window(*table["window_ns"], *table["edge_gaps_ns"])
    zl, _, _ = lab_peers.zlperf_counts(LAB_DATA / "peers-hold-time.dat", w, lab_peers.PROFILE_EVENTS["hold-time"])
    compared = 0
    for row in table["rows"]:
        key = (row["row"], row["label"])
        for peer in ("bpftrace", "hist trigger", "trace-cmd"):
            if row[peer] is not None:
                assert zl.get(key, 0) == row[peer], (key, peer)
                compared += 1
    assert compared > 20
    if have_tool("trace-cmd"):
        events, _ = lab_peers.parse_trace_cmd(LAB_DATA / "peers-hold-time.dat")
        assert lab_peers.trace_cmd_counts(events, w) == {k: v for k, v in zl.items() if v or k[0].startswith("holders")}


# ---------------------------------------------------------------- end to end (pytest -m lab)

def _host_counts(path: Path) -> dict:
    """Events per name from the host's trace-cmd report text (independent of zlperf)."""
    text = subprocess.run(["trace-cmd", "report", "-i", str(path)], capture_output=True, text=True, check=True).stdout
    counts: dict = {}
    for name in re.findall(r"^\s*\S.*?\[\d+\]\s+[\d.]+:\s+(\w+):", text, re.M):
        counts[name] = counts.get(name, 0) + 1
    return counts


@pytest.mark.lab
def test_lab_end_to_end(tmp_path):
    """Build (cached), boot, record every profile with the real zlperf in the guest, run the selftest peers
    beside `zlperf record`, regenerate fixtures."""
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, str(LAB / "run"), "--out", str(out), "--seconds", "2"],
                       capture_output=True, text=True, timeout=7200)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-3000:]
    info = json.loads((out / "lab.json").read_text())
    assert info["kernel"].startswith("6.12") and info["attempts"][-1]["boot_s"] is not None
    # The guest kernel's tracefs formats are the ABI the fixtures were recorded with.
    for ev in ("mm_zone_lock_contended", "mm_zone_locked", "mm_zone_lock_unlock"):
        got = (out / "formats" / f"kmem_{ev}.format").read_text()
        want = (DATA / "formats" / f"kmem_{ev}.format").read_text()
        strip = lambda t: re.sub(r"^ID: \d+\n", "", t, flags=re.M)  # noqa: E731 (IDs depend on the build)
        assert strip(got) == strip(want)
    hold = _host_counts(out / "hold-time.dat")
    assert hold.get("mm_zone_locked", 0) > 0 and hold.get("mm_zone_lock_unlock", 0) > 0
    # zlperf report, run inside the guest, counted exactly what the host's trace-cmd reads from the same file.
    for prof in ("minimal", "wait-time", "hold-time", "stock"):
        report = json.loads((out / f"{prof}.report.json").read_text())
        host = _host_counts(out / f"{prof}.dat")
        for name, n in report["events"].items():
            assert host.get(name.split(":")[-1], 0) == n, (prof, name)
        assert (out / f"{prof}.report.txt").stat().st_size > 0
    # The workload makes all three traced call sites contend (rmqueue_bulk is inlined into __rmqueue_pcplist),
    # over the run's kmem recordings (free_one_page waits are rare beside the process workload, frequent beside
    # the threaded one of the peer tasks); counted from the host's trace-cmd report text.
    callers = ""
    for rec in [out / f"{p}.dat" for p in ("minimal", "wait-time", "hold-time")] + sorted(out.glob("*/*.dat")):
        text = subprocess.run(["trace-cmd", "report", "-i", str(rec)], capture_output=True, text=True).stdout
        callers += " ".join(re.findall(r"mm_zone_lock_contended:.*?caller=(\S+)", text)) + " "
    for site in ("free_pcppages_bulk", "free_one_page", "rmqueue"):
        assert site in callers, (site, callers)
    assert (out / "full.perf.data").stat().st_size > 0 and (out / "full.v6.dat").stat().st_size > 0
    # The peer table: zlperf equal to trace-cmd, bpftrace and the hist triggers in each kmem profile's window.
    peers = json.loads((out / "peers.json").read_text())
    assert [d["task"] for d in peers] == ["peers-minimal", "peers-wait-time", "peers-hold-time", "live"]
    for d in peers:
        assert d["ok"] and not d["mismatches"], d
        assert any(row["row"] == "mm_zone_lock_contended" and row["zlperf"] > 0 for row in d["rows"]), d["profile"]
    rows = {(row["row"], row["label"]): row for row in peers[2]["rows"]}
    assert rows[("holders: waits", "all")]["bpftrace"] == rows[("holders: waits", "all")]["zlperf"] > 0
    # The live task: zlperf top and the exporter (whole-run totals of the workload's tasks) equal the peers too.
    live = {(row["row"], row["label"]): row for row in peers[3]["rows"]}
    assert live[("holders: waits", "all")]["zlperf top"] == live[("holders: waits", "all")]["zlperf exporter"] \
        == live[("holders: waits", "all")]["hist trigger"] > 0
    assert "PASS" in (out / "peers.md").read_text() and "FAIL" not in (out / "peers.md").read_text()
    dest = tmp_path / "fixtures"
    r = subprocess.run([sys.executable, str(LAB / "fixtures"), "--from", str(out), "--dest", str(dest)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    prov = (dest / "PROVENANCE.md").read_text()
    assert info["kernel"] in prov and "sha256" in prov and "qemu-system-x86_64" in prov
    for name in ("hold-time.perf.data", "peers-hold-time.dat", "live-hold-time.dat"):
        assert (dest / name).exists()
        assert re.search(rf"^\| {re.escape(name)} \| `zlperf record ", prov, re.M), name
