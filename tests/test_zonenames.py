"""Zone names for stock recordings: the BTF reader against pahole, the sidecar, and a live recording.

Live tests record `--profile stock` with both backends and check the zone entry against /proc/zoneinfo;
the sidecar reading is checked on the real stock fixture (with and without a sidecar beside it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import STOCK_DAT, have_tool, is_root
from zlperf.errors import ZlperfError
from zlperf.zonelocks import load_zone_locks, sidecar_path, write_zone_locks
from zlperf.record.btf import BTF_PATH, Btf
from zlperf.record.zonenames import ZoneLockWatcher, zone_layout

ZLPERF = [sys.executable, "-m", "zlperf"]
WORKLOAD = [sys.executable, "-m", "zlperf.workload"]

requires_btf = pytest.mark.skipif(not BTF_PATH.exists(), reason=f"no {BTF_PATH} (kernel without BTF)")
requires_pahole = pytest.mark.skipif(not have_tool("pahole"), reason="pahole not installed (apt install dwarves)")


def pahole(struct: str) -> str:
    """`pahole -C STRUCT` on the kernel's BTF: the independent view of the layout (its stderr is noise)."""
    res = subprocess.run(["pahole", "-C", struct, str(BTF_PATH)], capture_output=True, text=True, timeout=120)
    if res.returncode != 0 or not res.stdout.startswith(f"struct {struct} {{"):
        pytest.skip(f"pahole cannot read {BTF_PATH}: {res.stderr.strip()[-200:]}")
    return res.stdout


# Top-level member lines of pahole's output: "\tTYPE NAME[N]...;  /* OFFSET SIZE */".
_MEMBER = re.compile(r"^\t[^\t/{}][^;]*?\b(\w+)((?:\[\d+\])*)(?: __attribute__\(\(.*\)\))?;\s*/\*\s*(\d+)\s+(\d+)\s*\*/", re.M)


def pahole_members(text: str) -> list[tuple[str, int]]:
    return [(m.group(1), int(m.group(3))) for m in _MEMBER.finditer(text)]


def pahole_size(text: str) -> int:
    return int(re.search(r"/\* size: (\d+),", text).group(1))


# ---------------------------------------------------------------------------------------------
# The BTF reader, checked against pahole on the running kernel


@requires_btf
@requires_pahole
def test_zone_layout_equals_pahole():
    zone, pgdat = pahole("zone"), pahole("pglist_data")
    layout = zone_layout()
    zone_members = dict(pahole_members(zone))
    assert layout.lock_offset == zone_members["lock"]
    assert layout.zone_size == pahole_size(zone)
    assert layout.pgdat_size == pahole_size(pgdat)
    assert layout.node_zones_offset == dict(pahole_members(pgdat))["node_zones"]
    nelems = re.search(r"struct zone\s+node_zones\[(\d+)\]", pgdat)
    assert nelems and layout.node_zones_count == int(nelems.group(1))
    assert (layout.node_member == "node") == ("node" in zone_members)


@requires_btf
@requires_pahole
@pytest.mark.parametrize("struct", ["zone", "pglist_data", "task_struct"])
def test_every_member_offset_equals_pahole(struct):
    text = pahole(struct)
    btf = Btf.load()
    tid = btf.find(struct)
    ours = [(m.name, m.bit_offset // 8) for m in btf.members(tid) if m.name and not m.bitfield_size]
    theirs = pahole_members(text)
    assert len(theirs) > 10
    # pahole lines we parse are a subset (it prints bitfields, function pointers and anonymous members
    # differently): each of them must be ours, in the same order.
    ours_by_name = dict(ours)
    assert all(ours_by_name.get(name) == off for name, off in theirs), [
        (n, o, ours_by_name.get(n)) for n, o in theirs if ours_by_name.get(n) != o]
    assert btf.size(tid) == pahole_size(text)


@requires_btf
def test_truncated_or_foreign_btf_gives_one_line(tmp_path):
    data = BTF_PATH.read_bytes()
    cut = tmp_path / "cut.btf"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ZlperfError, match=r"cut\.btf: .*past the end"):
        Btf.load(cut)
    mid = tmp_path / "mid.btf"
    # A header whose type section ends inside a type record: the walk must say where.
    raw = bytearray(data)
    type_len = int.from_bytes(raw[12:16], "little")
    raw[12:16] = (type_len - 6).to_bytes(4, "little")
    mid.write_bytes(bytes(raw))
    with pytest.raises(ZlperfError) as err:
        Btf.load(mid)
    assert str(err.value).startswith(f"{mid}: offset 0x") and "\n" not in str(err.value)
    elf = tmp_path / "not.btf"
    elf.write_bytes(Path(sys.executable).resolve().read_bytes()[:4096])
    with pytest.raises(ZlperfError, match=r"not\.btf: offset 0x0: magic"):
        Btf.load(elf)
    with pytest.raises(ZlperfError, match="cannot read BTF"):
        Btf.load(tmp_path / "missing.btf")


# ---------------------------------------------------------------------------------------------
# The sidecar, on the real stock fixture


def report_json(path: Path, *extra: str) -> tuple[dict, str]:
    res = subprocess.run([*ZLPERF, "report", str(path), "--json", *extra], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    return json.loads(res.stdout), res.stderr


def test_sidecar_round_trip(tmp_path):
    trace = tmp_path / "x.dat"
    locks = {0xFFFF88863FFD6B08: (0, "Normal"), 0xFFFF88863FFD5E88: (1, "DMA32")}
    side = write_zone_locks(trace, locks)
    assert side == sidecar_path(trace) and side.name == "x.dat.zones.json"
    doc = json.loads(side.read_text())
    assert doc["schema"] == "zlperf.zonelocks/1" and doc["kernel"] == os.uname().release
    assert doc["locks"]["0xffff88863ffd6b08"] == {"node": 0, "zone": "Normal"}
    assert load_zone_locks(trace) == locks
    assert load_zone_locks(str(trace)) == locks


@pytest.mark.parametrize("content", ["{not json", '{"schema": "other/1", "locks": {}}',
                                     '{"schema": "zlperf.zonelocks/1", "locks": {"0xzz": {"node": 0, "zone": "Normal"}}}',
                                     '{"schema": "zlperf.zonelocks/1", "locks": {"0x10": {"node": "0"}}}'])
def test_bad_sidecar_is_one_warning_and_ignored(tmp_path, content):
    trace = tmp_path / STOCK_DAT.name
    shutil.copy(STOCK_DAT, trace)
    sidecar_path(trace).write_text(content)
    doc, err = report_json(trace)  # the real stock fixture (its waits are not on zone->lock)
    warnings = [ln for ln in err.splitlines() if ".zones.json" in ln]
    assert len(warnings) == 1 and warnings[0].startswith("zlperf: warning: ") and "ignored" in warnings[0]
    assert doc["totals"] == report_json(STOCK_DAT)[0]["totals"]


def test_no_sidecar_is_empty(tmp_path):
    assert load_zone_locks(tmp_path / "none.dat") == {}


# ---------------------------------------------------------------------------------------------
# Live: record on this kernel, name the zone, check it against /proc/zoneinfo

live = [
    pytest.mark.live,
    pytest.mark.skipif(not is_root(), reason="needs root"),
    pytest.mark.skipif(not have_tool("bpftrace"), reason="bpftrace not installed"),
    requires_btf,
    pytest.mark.skipif(not os.path.exists("/sys/kernel/tracing/events/lock/contention_begin"),
                       reason="tracefs not mounted or no lock:contention_begin in this kernel"),
]


def machine_zones() -> set[tuple[int, str]]:
    """(node, zone) pairs this machine has, from /proc/zoneinfo."""
    text = Path("/proc/zoneinfo").read_text()
    return {(int(n), z) for n, z in re.findall(r"^Node (\d+), zone\s+(\S+)", text, re.M)}


def _apply(marks):
    def deco(fn):
        for m in reversed(marks):
            fn = m(fn)
        return fn
    return deco


@_apply(live)
@pytest.mark.parametrize("backend", ["trace-cmd", "perf"])
def test_live_stock_recording_names_its_zone(backend, tmp_path, pcp_lists_shrunk):
    if backend == "perf" and not have_tool("perf"):
        pytest.skip("perf not installed")
    out = tmp_path / ("s.perf.data" if backend == "perf" else "s.dat")
    res = subprocess.run([*ZLPERF, "record", "--profile", "stock", "--backend", backend, "-o", str(out), "--",
                          *WORKLOAD, "--procs", "2", "--seconds", "2"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "naming zone locks with bpftrace" in res.stderr
    assert f"wrote {sidecar_path(out)}" in res.stderr
    side = json.loads(sidecar_path(out).read_text())
    assert side["schema"] == "zlperf.zonelocks/1" and side["kernel"] == os.uname().release
    assert side["locks"], res.stderr
    have = machine_zones()
    for addr, entry in side["locks"].items():
        assert (entry["node"], entry["zone"]) in have, (addr, entry, have)

    doc, _ = report_json(out)
    assert doc["zones"], "no waits attributed to zone->lock"
    for z in doc["zones"]:
        assert z["lock_addr"] in side["locks"], (z, side["locks"])  # every attributed zone lock was named
        entry = side["locks"][z["lock_addr"]]
        assert (z["node"], z["zone"]) == (entry["node"], entry["zone"])
        assert z["label"] == f"{z['node']}:{z['zone']}"
        assert z["contended_events"] > 0

    # The same recording without its sidecar still reports, by address.
    bare = tmp_path / ("bare" + out.suffix)
    bare.symlink_to(out)
    if backend == "perf":
        doc2, _ = report_json(bare, "--kallsyms", str(out.with_name("s.perf.kallsyms")))
    else:
        doc2, _ = report_json(bare)
    assert [z["lock_addr"] for z in doc2["zones"]] == [z["lock_addr"] for z in doc["zones"]]
    assert all(z["label"] == f"lock@{int(z['lock_addr'], 16):#x}" and z["node"] is None for z in doc2["zones"])
    # A sidecar that does not parse: one warning, and the same report by address.
    sidecar_path(bare).write_text('{"schema": "zlperf.zonelocks/1", "locks": ')
    doc3, err = report_json(bare, *(["--kallsyms", str(out.with_name("s.perf.kallsyms"))] if backend == "perf" else []))
    assert [ln for ln in err.splitlines() if "zones.json" in ln] == [
        f"zlperf: warning: {sidecar_path(bare)}: line 1: not a zone-lock sidecar (Expecting value): ignored, "
        "zone locks show as addresses"]
    assert doc3["zones"] == doc2["zones"]


@_apply(live)
def test_side_program_reports_only_zones_and_stops_promptly(pcp_lists_shrunk):
    import time

    watcher = ZoneLockWatcher(zone_layout())
    watcher.start()
    try:
        subprocess.run([*WORKLOAD, "--procs", "2", "--seconds", "1"], capture_output=True, timeout=120, check=True)
    finally:
        t = time.monotonic()
        locks = watcher.stop()
        took = time.monotonic() - t
    # stop() escalates to SIGKILL within seconds; the bound only catches a hang, not a slow machine.
    assert watcher.proc.returncode is not None and took < 60
    assert locks
    assert {v for v in locks.values()} <= machine_zones()
