"""zlperf fleet on Spark (local mode, one session for the module): the same numbers as DuckDB, the pooled
reference-tool numbers, and a one-host fleet equal to zlperf report.

Needs pyspark and Java 17 (setup.sh installs both); skipped with the reason when either is missing.
"""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("duckdb")
pytest.importorskip("pyspark")
if shutil.which("java") is None and not __import__("os").environ.get("JAVA_HOME"):
    pytest.skip("Spark needs Java (openjdk-17-jre-headless)", allow_module_level=True)

import fleet_truth  # noqa: E402
from conftest import FULL_DAT, FULL_PERF_DATA, FULL_PERF_KALLSYMS, FULL_V6_DAT, requires_perf, requires_trace_cmd  # noqa: E402
from zlperf.analysis import analyze  # noqa: E402
from zlperf.export.parquet import export_recording  # noqa: E402
from zlperf.fleet.engines import DuckDBEngine, SparkEngine  # noqa: E402
from zlperf.fleet.report import fleet_result  # noqa: E402
from zlperf.fleet.tables import find_hosts  # noqa: E402
from zlperf.readers import open_trace  # noqa: E402
from zlperf.report import build_document  # noqa: E402

HOSTS = [("full", FULL_DAT, None), ("v6", FULL_V6_DAT, None), ("perf", FULL_PERF_DATA, FULL_PERF_KALLSYMS)]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("spark-fleet")
    for name, path, _ in HOSTS:
        export_recording(str(path), str(root), name)
    return root


@pytest.fixture(scope="module")
def spark():
    engine = SparkEngine()  # local[*]
    yield engine
    engine.close()


def _run(engine, paths) -> dict:
    return json.loads(json.dumps(build_document(fleet_result(find_hosts([str(p) for p in paths]), engine))))


@pytest.fixture(scope="module")
def both(fleet, spark):
    duck = DuckDBEngine()
    try:
        return _run(spark, [fleet]), _run(duck, [fleet])
    finally:
        duck.close()


def test_spark_and_duckdb_give_the_same_document(both):
    on_spark, on_duckdb = both
    assert on_spark["source"].pop("format") == "zlperf.parquet/1 tables via spark"
    assert on_duckdb["source"].pop("format") == "zlperf.parquet/1 tables via duckdb"
    assert on_spark.pop("percentiles_note").replace("spark", "ENGINE") == \
        on_duckdb.pop("percentiles_note").replace("duckdb", "ENGINE")
    assert on_spark == on_duckdb


@requires_trace_cmd
@requires_perf
def test_spark_numbers_are_the_pooled_reference_numbers(both):
    doc, _ = both
    want = fleet_truth.pooled([(path, ks) for _, path, ks in HOSTS])
    for got, exp in [(doc["totals"], want["totals"])] + [(z, want["zones"][z["label"]]) for z in doc["zones"]] + \
            [(c, want["callers"][c["caller"]]) for c in doc["callers"] if c["role"] == "lock"]:
        for k in ("contended_events", "acquisitions", "contended"):
            assert got[k] == exp[k]
        for s in ("wait_ns", "hold_ns"):
            assert {k: got[s][k] for k in fleet_truth.STAT_KEYS} == exp[s]


def test_a_one_host_fleet_on_spark_is_its_report(fleet, spark):
    doc = _run(spark, [fleet / "host=full"])
    doc.pop("hosts")
    with open_trace(str(FULL_DAT)) as reader:
        assert doc == json.loads(json.dumps(build_document(analyze(reader))))
