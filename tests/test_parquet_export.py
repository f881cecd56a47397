"""zlperf export --parquet: the tables hold every acquisition, wait, hold and holder that trace-cmd report prints.

Checked against tests/fleet_truth.py and tests/holders_truth.py (plain parses of `trace-cmd report` text),
not against zlperf's own report; plus the folder contract (schema version everywhere, no writes through
symlinks, atomic replacement) and docs/schema.md naming every column.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections import Counter, defaultdict

import pytest

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

import fleet_truth  # noqa: E402
import holders_truth  # noqa: E402
from conftest import DATA, FULL_DAT, REPO, STOCK_DAT, requires_trace_cmd  # noqa: E402
from zlperf.analysis import AnalysisOptions  # noqa: E402
from zlperf.errors import ZlperfError  # noqa: E402
from zlperf.export.parquet import export_recording  # noqa: E402
from zlperf.export.schema import METADATA_KEY, NO_ACQUISITION, NOT_TRACED, SCHEMA_VERSION, TABLES  # noqa: E402
from zlperf.readers import open_trace  # noqa: E402

SERIES_DAT = DATA / "series.dat"


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    out = tmp_path_factory.mktemp("pq")
    counts = export_recording(str(FULL_DAT), str(out), "h1")
    return out / "host=h1", counts


def _table(folder, name) -> list[dict]:
    return pq.read_table(str(folder / f"{name}.parquet")).to_pylist()


def test_every_table_is_written_with_its_schema_version(full):
    folder, counts = full
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{t}.parquet" for t in TABLES)
    for table, columns in TABLES.items():
        schema = pq.read_schema(str(folder / f"{table}.parquet"))
        assert schema.metadata[METADATA_KEY.encode()].decode() == SCHEMA_VERSION
        assert [f.name for f in schema] == [c.name for c in columns]
    assert counts == {"acquisitions": 26229, "contended": 498, "stock_waits": 0, "pairing": 0}


def test_run_row_names_the_recording(full):
    folder, _ = full
    (run,) = _table(folder, "run")
    assert run["host"] == "h1" and run["schema_version"] == SCHEMA_VERSION
    assert run["recording_sha256"] == hashlib.sha256(FULL_DAT.read_bytes()).hexdigest()
    assert run["recording_bytes"] == FULL_DAT.stat().st_size and run["kernel_release"] == "6.12.117"
    assert (run["abi_key"], run["profile"], run["can_holders"]) == ("kmem", "hold-time", True)
    assert {e["name"]: e["count"] for e in run["events"]} == {
        "kmem:mm_zone_lock_contended": 498, "kmem:mm_zone_lock_unlock": 26229, "kmem:mm_zone_locked": 26229}
    assert run["duration_ns"] == run["last_ts_ns"] - run["first_ts_ns"] > 0


@requires_trace_cmd
def test_waits_and_holds_are_those_trace_cmd_prints(full):
    """Per caller and zone, the multiset of wait_ns and hold_ns values equals the text's (holds: per-CPU pairing)."""
    folder, _ = full
    want = fleet_truth.values(FULL_DAT)
    rows = _table(folder, "acquisitions")
    for dim, col in (("zones", "zone"), ("callers", "caller")):
        got: dict = defaultdict(lambda: {"wait": [], "hold": [], "acquisitions": 0, "contended": 0})
        for r in rows:
            g = got[r[col]]
            g["acquisitions"] += 1
            g["contended"] += bool(r["contended"])
            if r["wait_ns"] is not None:
                g["wait"].append(r["wait_ns"])
            if r["hold_ns"] is not None:
                g["hold"].append(r["hold_ns"])
        for key, g in want[dim].items():
            if not g["acquisitions"]:
                continue
            assert Counter(got[key]["wait"]) == Counter(g["wait"]), (dim, key)
            assert Counter(got[key]["hold"]) == Counter(g["hold"]), (dim, key)
            assert (got[key]["acquisitions"], got[key]["contended"]) == (g["acquisitions"], g["contended"])
    contended = Counter(r["caller"] for r in _table(folder, "contended"))
    assert contended == Counter({k: g["contended_events"] for k, g in want["callers"].items() if g["contended_events"]})


@requires_trace_cmd
def test_each_wait_carries_the_holder_trace_cmd_text_gives(full):
    folder, _ = full
    truth = holders_truth.attribute(holders_truth.from_trace_cmd(FULL_DAT))
    waits = [r for r in _table(folder, "acquisitions") if r["contended"]]
    assert len(waits) == truth["waits"] and all(r["holder_caller"] is not None for r in waits)
    not_traced = 0
    for r in waits:
        found = truth["holder_of"].get((r["ts_ns"], r["cpu"]))
        if found is None:
            not_traced += 1
            assert r["holder_caller"] == NOT_TRACED and r["holder_pid"] is None and r["holder_cpu"] is None
            continue
        release, acquisition = found
        assert (r["holder_release_ts_ns"], r["holder_cpu"], r["holder_pid"]) == (release.ts, release.cpu, release.pid)
        if acquisition is None:
            assert r["holder_caller"] == NO_ACQUISITION and r["holder_hold_ns"] is None
        else:
            assert r["holder_caller"] == acquisition.caller
            assert r["holder_hold_ns"] == release.ts - acquisition.ts and r["holder_batch"] == acquisition.count
    assert not_traced == truth["not_traced"]
    pairs = Counter()
    for r in waits:
        pairs[(r["caller"], r["holder_caller"])] += 1
    assert {k: n for k, n in pairs.items()} == {k: v[0] for k, v in truth["handoffs"].items()}
    assert all(r["holder_caller"] is None for r in _table(folder, "acquisitions") if not r["contended"])


def test_stock_waits_and_their_stacks(tmp_path):
    """Stock kernels: waits with their lock address and stack (every function counted as a zone-lock frame,
    since the fixture's contention is on other locks)."""
    with open_trace(str(STOCK_DAT)) as reader:
        frames = {name: "test: every wait counts" for name in reader.info.symbols.names}
    counts = export_recording(str(STOCK_DAT), str(tmp_path), "stock", AnalysisOptions(zone_lock_frames=frames))
    assert counts["stock_waits"] == 54 and counts["acquisitions"] == counts["contended"] == 0
    folder = tmp_path / "host=stock"
    waits = _table(folder, "stock_waits")
    stacks = {s["stack_id"]: s for s in _table(folder, "stacks")}
    assert all(w["lock_addr"] and w["zone"] == f"lock@{w['lock_addr']}" and w["wait_ns"] > 0 for w in waits)
    with_stack = [w for w in waits if w["stack_id"] is not None]
    assert with_stack and all(w["stack_id"] in stacks for w in with_stack)
    assert all(len(s["frames"]) == len(s["addrs"]) > 0 for s in stacks.values())
    assert sorted(stacks) == list(range(len(stacks)))


def test_series_abi_acquisitions_have_no_contended_flag(tmp_path):
    export_recording(str(SERIES_DAT), str(tmp_path), "s", AnalysisOptions(abi="series"))
    (run,) = _table(tmp_path / "host=s", "run")
    rows = _table(tmp_path / "host=s", "acquisitions")
    assert run["abi_key"] == "series" and run["contended_flag"] is False
    assert rows and all(r["contended"] is None and r["zone_ptr"] and r["batch"] is None for r in rows)
    assert sum(r["wait_ns"] is not None for r in rows) > 0.9 * len(rows)


def test_schema_md_documents_every_column():
    doc = (REPO / "docs" / "schema.md").read_text()
    assert SCHEMA_VERSION in doc
    for table, columns in TABLES.items():
        assert f"## `{table}`" in doc, table
        section = doc.split(f"## `{table}`", 1)[1].split("\n## ", 1)[0]
        for c in columns:
            assert re.search(rf"\| `{re.escape(c.name)}` \| `{re.escape(c.type)}` \|", section), (table, c.name)


def test_outputs_never_go_through_symlinks(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(ZlperfError, match="symbolic link"):
        export_recording(str(FULL_DAT), str(tmp_path / "link"), "h")
    out = tmp_path / "out"
    out.mkdir()
    (out / "host=h").symlink_to(target)
    with pytest.raises(ZlperfError, match="symbolic link"):
        export_recording(str(FULL_DAT), str(out), "h")
    assert not any(target.iterdir())
    (out / "host=x").mkdir()
    (out / "host=x" / "precious.txt").write_text("mine")
    with pytest.raises(ZlperfError, match="not an earlier zlperf export"):
        export_recording(str(FULL_DAT), str(out), "x")
    assert (out / "host=x" / "precious.txt").read_text() == "mine"
    with pytest.raises(ZlperfError, match="--host"):
        export_recording(str(FULL_DAT), str(out), "../evil")


def test_a_second_export_replaces_the_first_and_leaves_no_temporary_files(tmp_path):
    export_recording(str(FULL_DAT), str(tmp_path), "h")
    before = (tmp_path / "host=h" / "run.parquet").stat().st_ino
    export_recording(str(FULL_DAT), str(tmp_path), "h")
    assert (tmp_path / "host=h" / "run.parquet").stat().st_ino != before
    assert sorted(os.listdir(tmp_path)) == ["host=h"]


def test_cli_export_and_bad_input_is_one_line(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "zlperf", *a], capture_output=True, text=True,
                                    cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))
    ok = run("export", str(FULL_DAT), "--parquet", str(tmp_path / "fleet"), "--host", "web7")
    assert ok.returncode == 0, ok.stderr
    assert "host=web7" in ok.stdout and "26229 acquisitions" in ok.stdout
    bad = tmp_path / "bad.dat"
    bad.write_bytes(b"not a trace")
    err = run("export", str(bad), "--parquet", str(tmp_path / "fleet"), "--host", "x")
    assert err.returncode == 2 and "Traceback" not in err.stderr and len(err.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "fleet" / "host=x").exists()
    assert [p.name for p in (tmp_path / "fleet").iterdir()] == ["host=web7"]
