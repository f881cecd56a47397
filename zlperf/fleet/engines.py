"""The engines that run the fleet's SQL: DuckDB embedded (the default) and Spark (local or a cluster).

Each registers every host's Parquet files as the views the queries read, runs queries and returns plain
tuples. Nothing is computed here: the numbers come from the SQL in :mod:`zlperf.fleet.sql`.
"""

from __future__ import annotations

__all__ = ["Engine", "DuckDBEngine", "SparkEngine", "open_engine", "ENGINES"]

import os
import shutil
import tempfile
from typing import Any, Optional, Protocol, Sequence

from zlperf.errors import ZlperfError
from zlperf.extras import require
from zlperf.fleet.sql import DUCKDB, SPARK, Dialect

ENGINES = ("duckdb", "spark")


class Engine(Protocol):
    """What the fleet needs of an engine."""

    name: str
    dialect: Dialect

    def register_files(self, view: str, files: Sequence[str]) -> None:
        """``view`` reads these Parquet files (all of one table, one schema)."""
        ...

    def register_rows(self, view: str, columns: Sequence[tuple[str, str]], rows: Sequence[tuple]) -> None:
        """``view`` holds ``rows`` (small: one per host); ``columns`` are (name, "string"|"bigint")."""
        ...

    def materialize(self, name: str, sql: str) -> None:
        """Run ``sql`` once and keep its result as the table ``name``."""
        ...

    def rows(self, sql: str) -> list[tuple]:
        ...

    def close(self) -> None:
        ...


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _failed(engine: str, exc: BaseException) -> ZlperfError:
    """An engine's own error (out of memory, an unreadable file, a lost cluster) as one line."""
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return ZlperfError(f"{engine}: {first[:400]}")


class DuckDBEngine:
    """DuckDB in this process; spills to a private temporary folder when the fleet outgrows memory."""

    name = "duckdb"
    dialect = DUCKDB

    def __init__(self) -> None:
        duckdb = require("duckdb", "duckdb")
        self._tmp = tempfile.mkdtemp(prefix="zlperf-duckdb-")
        self.con = duckdb.connect(":memory:", config={"temp_directory": self._tmp})
        self._errors = (duckdb.Error,)

    def register_files(self, view: str, files: Sequence[str]) -> None:
        listed = ", ".join(_quote(f) for f in files)
        try:
            self.con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM read_parquet([{listed}])")
        except self._errors as exc:
            raise _failed("duckdb", exc) from None

    def register_rows(self, view: str, columns: Sequence[tuple[str, str]], rows: Sequence[tuple]) -> None:
        pa = require("pyarrow", "duckdb")
        types = {"string": pa.string(), "bigint": pa.int64()}
        table = pa.table({name: pa.array([r[i] for r in rows], types[t]) for i, (name, t) in enumerate(columns)})
        self.con.register(f"{view}_arrow", table)
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {view} AS SELECT * FROM {view}_arrow")

    def materialize(self, name: str, sql: str) -> None:
        try:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {sql}")
        except self._errors as exc:
            raise _failed("duckdb", exc) from None

    def rows(self, sql: str) -> list[tuple]:
        try:
            return self.con.execute(sql).fetchall()
        except self._errors as exc:
            raise _failed("duckdb", exc) from None

    def close(self) -> None:
        self.con.close()
        shutil.rmtree(self._tmp, ignore_errors=True)


_LOG4J = """rootLogger.level = error
logger.repl.name = org.apache.spark.repl.Main
logger.repl.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = spark: %p %c{1}: %m%n
"""


class SparkEngine:
    """Spark SQL through pyspark: ``local[*]`` (every core of this machine) or the cluster at ``master``.

    The Parquet files must be readable at the same paths by every executor (a shared or distributed file
    system, or local mode)."""

    name = "spark"
    dialect = SPARK

    def __init__(self, master: Optional[str] = None, conf: Optional[dict[str, str]] = None):
        sql = require("pyspark.sql", "spark")
        self._tmp = tempfile.mkdtemp(prefix="zlperf-spark-")
        log4j = os.path.join(self._tmp, "log4j2.properties")
        with open(log4j, "w") as fh:
            fh.write(_LOG4J)
        settings = {"spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false",
                    "spark.sql.session.timeZone": "UTC", "spark.local.dir": self._tmp,
                    "spark.driver.extraJavaOptions": f"-Dlog4j2.configurationFile=file:{log4j}"}
        if not master or master.startswith("local"):
            # One machine: a shuffle partition per core, not Spark's 200 (each is a task to schedule).
            settings["spark.sql.shuffle.partitions"] = str(max(2, os.cpu_count() or 2))
        settings.update(conf or {})
        builder = sql.SparkSession.builder.appName("zlperf fleet").master(master or "local[*]")
        for k, v in settings.items():
            builder = builder.config(k, v)
        try:
            self.spark = builder.getOrCreate()
        except Exception as exc:  # the JVM or the cluster: one line, not a Java stack trace
            shutil.rmtree(self._tmp, ignore_errors=True)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ZlperfError(f"spark: cannot start a session on {master or 'local[*]'} ({first}); Spark needs "
                              "Java 17 (JAVA_HOME or java on PATH)") from None
        self.spark.sparkContext.setLogLevel("ERROR")
        errors = require("pyspark.errors", "spark")
        self._errors = (errors.PySparkException, require("py4j.protocol", "spark").Py4JError)

    def register_files(self, view: str, files: Sequence[str]) -> None:
        try:
            self.spark.read.parquet(*files).createOrReplaceTempView(view)
        except self._errors as exc:
            raise _failed("spark", exc) from None

    def register_rows(self, view: str, columns: Sequence[tuple[str, str]], rows: Sequence[tuple]) -> None:
        schema = ", ".join(f"{name} {t}" for name, t in columns)
        self.spark.createDataFrame(list(rows), schema).createOrReplaceTempView(view)

    def materialize(self, name: str, sql: str) -> None:
        try:
            self.spark.catalog.dropTempView(name)  # an earlier report's, in a reused session (uncached too)
            self.spark.sql(f"CACHE TABLE {name} AS {sql}")
        except self._errors as exc:
            raise _failed("spark", exc) from None

    def rows(self, sql: str) -> list[tuple]:
        try:
            return [tuple(r) for r in self.spark.sql(sql).collect()]
        except self._errors as exc:
            raise _failed("spark", exc) from None

    def close(self) -> None:
        self.spark.catalog.clearCache()
        self.spark.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)


def open_engine(name: str, master: Optional[str] = None, conf: Optional[dict[str, str]] = None) -> Any:
    """An engine by name (``master`` and ``conf``: Spark only)."""
    if name == "duckdb":
        if master:
            raise ZlperfError("--master is for --engine spark (DuckDB runs in this process)")
        return DuckDBEngine()
    if name == "spark":
        return SparkEngine(master, conf)
    raise ZlperfError(f"--engine {name!r}: choose one of {', '.join(ENGINES)}")
