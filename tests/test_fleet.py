"""zlperf fleet on DuckDB: real recordings exported as hosts give the pooled numbers of their trace-cmd / perf
script text exactly, and a fleet of one host is that host's zlperf report.

The pooled truth is tests/fleet_truth.py (every value of every file from the reference tools' text, sorted,
nearest rank); the one-host check compares the whole document with `zlperf report`'s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("duckdb")

import fleet_truth  # noqa: E402
from conftest import (  # noqa: E402
    DATA, FULL_DAT, FULL_PERF_DATA, FULL_PERF_KALLSYMS, FULL_V6_DAT, MINIMAL_DAT, REPO, STOCK_DAT, WAIT_DAT,
    requires_perf, requires_trace_cmd)
from zlperf.analysis import AnalysisOptions, analyze  # noqa: E402
from zlperf.export.parquet import export_recording  # noqa: E402
from zlperf.fleet import fleet_report  # noqa: E402
from zlperf.readers import open_trace  # noqa: E402
from zlperf.report import build_document  # noqa: E402

HOLD_TIME = [("full", FULL_DAT, None), ("v6", FULL_V6_DAT, None), ("perf", FULL_PERF_DATA, FULL_PERF_KALLSYMS)]
STAT_KEYS = fleet_truth.STAT_KEYS


def _stock_options() -> AnalysisOptions:
    with open_trace(str(STOCK_DAT)) as reader:  # the fixture's waits are on other locks: count them all
        return AnalysisOptions(zone_lock_frames={n: "test: every wait" for n in reader.info.symbols.names})


#: name -> (recording, analysis options) of every kind of recording a fleet may hold
ONE_HOST = {
    "full": (FULL_DAT, None), "v6": (FULL_V6_DAT, None), "wait": (WAIT_DAT, None), "minimal": (MINIMAL_DAT, None),
    "perf": (FULL_PERF_DATA, None), "series": (DATA / "series.dat", AnalysisOptions(abi="series")),
    "stock": (STOCK_DAT, "stock"),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Every ONE_HOST recording exported under its own host folder, and its report document."""
    root = tmp_path_factory.mktemp("fleet")
    reports = {}
    for name, (path, options) in ONE_HOST.items():
        options = _stock_options() if options == "stock" else options
        export_recording(str(path), str(root / "all"), name, options)
        with open_trace(str(path)) as reader:
            reports[name] = json.loads(json.dumps(build_document(analyze(reader, options))))
    hold_time = root / "hold-time"
    for name, _, _ in HOLD_TIME:
        shutil.copytree(root / "all" / f"host={name}", hold_time / f"host={name}")
    return root, reports


def _doc(paths, **kw) -> dict:
    return json.loads(json.dumps(build_document(fleet_report([str(p) for p in paths], **kw))))


@pytest.mark.parametrize("name", sorted(ONE_HOST))
def test_a_fleet_of_one_host_is_its_report(exported, name):
    root, reports = exported
    doc = _doc([root / "all" / f"host={name}"])
    hosts = doc.pop("hosts")
    assert doc == reports[name]
    assert [h["host"] for h in hosts] == [name] and hosts[0]["kernel"].startswith("6.12.117")


@requires_trace_cmd
@requires_perf
def test_pooled_numbers_equal_the_reference_tools_text(exported):
    root, _ = exported
    doc = _doc([root / "hold-time"])
    want = fleet_truth.pooled([(path, ks) for _, path, ks in HOLD_TIME])
    _equal(doc["totals"], want["totals"], "totals")
    assert {z["label"] for z in doc["zones"]} == set(want["zones"])
    for z in doc["zones"]:
        _equal(z, want["zones"][z["label"]], f"zone {z['label']}")
    lock_callers = [c for c in doc["callers"] if c["role"] == "lock"]
    assert {c["caller"] for c in lock_callers} == {k for k, g in want["callers"].items() if g["acquisitions"]}
    for c in lock_callers:
        _equal(c, want["callers"][c["caller"]], f"caller {c['caller']}")
    assert "exact" in doc["percentiles_note"] and "duckdb" in doc["percentiles_note"]
    assert [h["host"] for h in doc["hosts"]] == ["perf", "v6", "full"]  # most contended first


def _equal(got: dict, want: dict, where: str) -> None:
    for k in ("contended_events", "acquisitions", "contended"):
        assert got[k] == want[k], (where, k)
    for s in ("wait_ns", "hold_ns"):
        assert {k: got[s][k] for k in STAT_KEYS} == want[s], (where, s)


def test_a_mixed_fleet_keeps_unknowns_null_and_counts_everything(exported):
    root, reports = exported
    doc = _doc([root / "all" / "host=full", root / "all" / "host=wait", root / "all" / "host=minimal"])
    assert doc["profile"] == "mixed: hold-time, minimal, wait-time"
    assert doc["totals"]["hold_ns"] is None and doc["totals"]["acquisitions"] is None
    assert doc["totals"]["contended_events"] == sum(reports[n]["totals"]["contended_events"]
                                                    for n in ("full", "wait", "minimal"))
    rows = {h["host"]: h for h in doc["hosts"]}
    assert rows["minimal"]["acquisitions"] is None and rows["wait"]["hold_p99_ns"] is None
    assert rows["full"]["hold_p99_ns"] == reports["full"]["totals"]["hold_ns"]["p99"]


def test_the_fleet_document_has_every_key_of_a_report_and_each_is_explained(exported):
    root, reports = exported
    doc = _doc([root / "hold-time"])
    single = reports["full"]
    for key in single:
        assert key in doc, key
    for dim in ("zones", "callers", "cpus", "tasks", "top_waits", "top_holds"):
        assert set(single[dim][0]) <= set(doc[dim][0]) | {"addr"}, dim
    text = (REPO / "docs" / "report_example.txt").read_text()
    keys = set(doc) | {k for h in doc["hosts"] for k in h}
    assert not [k for k in sorted(keys) if f"`{k}`" not in text]


def test_a_folder_of_hosts_equals_its_hosts_listed(exported):
    root, _ = exported
    listed = [root / "hold-time" / f"host={n}" for n, _, _ in HOLD_TIME]
    assert _doc([root / "hold-time"]) == _doc(listed)


def _zlperf(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zlperf", *args], capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=600)


def test_cli_text_csv_and_json(exported):
    root, _ = exported
    text = _zlperf("fleet", str(root / "hold-time"), "--top", "3")
    assert text.returncode == 0, text.stderr
    assert "fleet of 3 hosts" in text.stdout and "== by host (3 hosts, most contended first)" in text.stdout
    csv = _zlperf("fleet", str(root / "hold-time"), "--csv", "--by", "host")
    assert csv.stdout.splitlines()[0].startswith("host,kernel,recording,profile")
    assert len(csv.stdout.splitlines()) == 4
    doc = json.loads(_zlperf("fleet", str(root / "hold-time"), "--json").stdout)
    assert doc["schema"] == "zlperf.report/1" and len(doc["merged_from"]) == 3
    pytest.importorskip("plotly")
    page = root / "fleet.html"
    res = _zlperf("fleet", str(root / "hold-time"), "--html", str(page))
    assert res.returncode == 0, res.stderr
    assert "fleet of 3 hosts" in page.read_text()


@pytest.mark.parametrize("damage, message", [
    ("empty", "no zlperf tables here"),
    ("missing", "pairing.parquet: missing"),
    ("garbage", "not a Parquet file"),
    ("version", "this zlperf reads zlperf.parquet/1"),
    ("column", "column 'wait_ns' is string, not int64"),
    ("twice", "is also in"),
    ("renamed", "folder and tables disagree"),
])
def test_bad_folders_are_one_line(exported, tmp_path, damage, message):
    import pyarrow as pa
    import pyarrow.parquet as pq

    root, _ = exported
    host = tmp_path / "fleet" / "host=full"
    shutil.copytree(root / "all" / "host=full", host)
    args = [str(tmp_path / "fleet")]
    if damage == "empty":
        args = [str(tmp_path / "nothing")]
        (tmp_path / "nothing").mkdir()
    elif damage == "missing":
        (host / "pairing.parquet").unlink()
    elif damage == "garbage":
        (host / "contended.parquet").write_bytes(b"PAR1 not really")
    elif damage in ("version", "column"):
        t = pq.read_table(str(host / "acquisitions.parquet"))
        if damage == "version":
            t = t.replace_schema_metadata({"zlperf.schema": "zlperf.parquet/0"})
        else:
            t = t.set_column(t.schema.get_field_index("wait_ns"), "wait_ns", t["wait_ns"].cast(pa.string()))
        pq.write_table(t, str(host / "acquisitions.parquet"))
    elif damage == "twice":
        args = [str(host), str(host)]
    elif damage == "renamed":
        host.rename(tmp_path / "fleet" / "host=other")
    res = _zlperf("fleet", *args)
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_the_core_imports_no_engine_library():
    """perf's embedded Python imports the core: pyarrow, duckdb and pyspark are loaded only by exports and fleets."""
    code = ("import sys, zlperf.analysis, zlperf.report, zlperf.render.text, zlperf.render.csv, zlperf.readers, "
            "zlperf.cli, zlperf.commands.fleet, zlperf.commands.export, zlperf.export.parquet, zlperf.fleet; "
            "zlperf.cli.build_parser(); "
            "print(sorted(m for m in ('pyarrow', 'duckdb', 'pyspark') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=str(REPO)), check=True)
    assert out.stdout.strip() == "[]"
