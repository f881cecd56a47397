"""The kernel lab (lab/): fast checks of its pieces by default; `pytest -m lab` boots the guest end to end.

Expectations come from independent sources: the tracefs format files recorded on the fixture kernel
(tests/data/formats), the kernel's own Kconfig/.config, GNU patch, and the host's trace-cmd report.
"""

from __future__ import annotations

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
SOURCE = CACHE / "linux-source-6.12"  # unpacked pristine source, when a lab build has been set up
KERNEL = CACHE / "kernels" / "zone-lock"

sys.path.insert(0, str(LAB))
import lab as labmod  # noqa: E402  (lab/lab.py, the lab's host-side module)


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
    # What the lab guest needs, as the issue and ENVIRONMENT.md list it.
    for need in ("CONFIG_NUMA", "CONFIG_FTRACE", "CONFIG_STACKTRACE", "CONFIG_KALLSYMS_ALL", "CONFIG_PERF_EVENTS",
                 "CONFIG_BLK_DEV_INITRD", "CONFIG_NET_9P_VIRTIO", "CONFIG_9P_FS"):
        assert opts.get(need) == "y", f"{need} must be y in {FRAGMENT}"
    assert opts.get("CONFIG_DEBUG_INFO_NONE") == "y", "no debug info: the build must stay small"
    assert opts.get("CONFIG_DEBUG_INFO_BTF", "n") == "n"


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


@pytest.mark.skipif(not SOURCE.is_dir() or not have_tool("patch"), reason="no cached 6.12 source or no patch")
def test_patches_apply_to_the_cached_source(tmp_path):
    r = subprocess.run(["patch", "-p1", "--dry-run", "-i", str(PATCH1)], cwd=SOURCE, capture_output=True, text=True)
    assert r.returncode == 0 and "FAILED" not in r.stdout and "offset" not in r.stdout, r.stdout + r.stderr
    # The series applies on top of the first patch: try it on a copy of the files they touch.
    for rel in ("mm/page_alloc.c", "include/trace/events/kmem.h"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SOURCE / rel, tmp_path / rel)
    for patch in (PATCH1, PATCH2):
        r = subprocess.run(["patch", "-p1", "-i", str(patch)], cwd=tmp_path, capture_output=True, text=True)
        assert r.returncode == 0 and "fuzz" not in r.stdout, r.stdout + r.stderr


# ---------------------------------------------------------------- scripts

def test_build_kernel_dry_run_and_cache_key():
    out = subprocess.run([str(LAB / "build-kernel"), "--dry-run"], capture_output=True, text=True, check=True).stdout
    series = subprocess.run([str(LAB / "build-kernel"), "--dry-run", "--series"], capture_output=True, text=True,
                            check=True).stdout
    key = re.search(r"^key:\s+(\w+)", out, re.M).group(1)
    assert re.search(r"^variant:\s+zone-lock$", out, re.M) and re.search(r"^variant:\s+series$", series, re.M)
    assert key != re.search(r"^key:\s+(\w+)", series, re.M).group(1), "the series build must not share the cache"
    assert PATCH2.name not in out and PATCH2.name in series


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
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(LAB / "workload.c")], check=True)
    r = subprocess.run([str(exe), "-p", "1", "-m", "1", "-s", "0.3"], capture_output=True, text=True, check=True)
    doc = json.loads(r.stdout)
    assert doc["procs"] == 1 and doc["rounds"] > 0
    assert abs(doc["rounds_per_s"] - doc["rounds"] / doc["seconds"]) < 0.01 * doc["rounds_per_s"] + 0.01
    assert subprocess.run([str(exe), "-p", "0"], capture_output=True).returncode == 2


def test_overhead_table_ratios():
    import random

    rng = random.Random(7)
    runs = [{"profile": p, "run": i, "rounds_per_s": rng.uniform(50, 100)}
            for p in labmod.OVERHEAD_PROFILES for i in range(5)]
    info = {"kernel": "k", "variant": "zone-lock", "cpus": 4, "tcg_thread": "multi", "workload": "w",
            "pcp_fraction": 1, "zlperf_version": "v", "zlperf_git": "g", "run": "r", "date": "d"}
    text = labmod.overhead_table(runs, info)
    assert "TCG" in text
    base = statistics.median(r["rounds_per_s"] for r in runs if r["profile"] == "none")
    for prof in labmod.OVERHEAD_PROFILES:
        med = statistics.median(r["rounds_per_s"] for r in runs if r["profile"] == prof)
        row = re.search(rf"^\| {prof} \|.*?\| 5 \| ([\d.]+) \|", text, re.M)
        assert row and float(row.group(1)) == pytest.approx(med / base, abs=0.0006)
    with pytest.raises(labmod.LabError):
        labmod.overhead_table([r for r in runs if r["profile"] != "none"], info)


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
    """Build (cached), boot, record every profile with the real zlperf in the guest, regenerate fixtures."""
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, str(LAB / "run"), "--out", str(out), "--seconds", "2"],
                       capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
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
    assert (out / "full.perf.data").stat().st_size > 0 and (out / "full.v6.dat").stat().st_size > 0
    dest = tmp_path / "fixtures"
    r = subprocess.run([sys.executable, str(LAB / "fixtures"), "--from", str(out), "--dest", str(dest)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    prov = (dest / "PROVENANCE.md").read_text()
    assert info["kernel"] in prov and "sha256" in prov and "qemu-system-x86_64" in prov
    assert (dest / "full.dat").exists() and (dest / "wait.dat").exists()
