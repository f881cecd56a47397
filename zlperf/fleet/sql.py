"""The fleet's SQL: one text for every engine, the few dialect differences (integer division, text
aggregation, the string type) behind :class:`Dialect`.

Exact percentiles by nearest rank over the pooled values: the values of a group are counted per distinct
value, a running count is taken in value order, and the p-th percentile is the smallest value whose running
count reaches rank = ceil(p/100 * n). With integers that is ``upto * 100 >= n * p`` (``upto * 1000 >= n *
999`` for p99.9): no division, no rounding, and the same answer on DuckDB and Spark.

The views the queries read: ``acquisitions``, ``contended``, ``stock_waits``, ``pairing`` (every host's
Parquet files, docs/schema.md), ``params`` (one row per host: its timeline's bin width and window), and
``vc``, each dimension's values counted, materialized on the way.
"""

from __future__ import annotations

__all__ = ["Dialect", "DUCKDB", "SPARK", "KEYS", "KEY_COLUMNS", "PERCENT", "DIMENSIONS", "COUNTED", "counters", "values",
           "stats", "histograms", "timeline", "slices", "worst", "holder_totals", "handoffs", "top_holders",
           "convoys", "stacks"]

from dataclasses import dataclass

from zlperf.export.schema import NO_ACQUISITION, NOT_TRACED


@dataclass(frozen=True)
class Dialect:
    """What differs between the engines' SQL."""

    name: str
    string: str  #: the string type in CAST
    int_div: str  #: integer division operator (both truncate; every operand here is non-negative)
    text_agg: str  #: aggregate joining texts with commas, ``{}`` for the expression

    def idiv(self, a: str, b: str) -> str:
        return f"(({a}) {self.int_div} ({b}))"

    def agg(self, expr: str) -> str:
        return self.text_agg.format(expr)


DUCKDB = Dialect("duckdb", "VARCHAR", "//", "string_agg({}, ',')")
SPARK = Dialect("spark", "STRING", "div", "concat_ws(',', collect_list({}))")

#: The generic key columns every grouped query returns, and their types.
KEY_COLUMNS = (("k_host", "s"), ("k_zone", "s"), ("k_node", "INT"), ("k_zname", "s"), ("k_lock", "s"),
               ("k_ptr", "s"), ("k_caller", "s"), ("k_addr", "s"), ("k_int", "BIGINT"), ("k_comm", "s"))
#: Which key columns identify a group of each dimension (the rest are null).
KEYS = {
    "total": (), "host": ("k_host",),
    "zone": ("k_zone", "k_node", "k_zname", "k_lock", "k_ptr"),
    "caller": ("k_caller", "k_addr"),
    "cpu": ("k_host", "k_int"), "task": ("k_host", "k_int", "k_comm"), "batch": ("k_int",),
}
#: Percentiles as (label, numerator, denominator): p = numerator / denominator percent.
PERCENT = (("p50", 50, 1), ("p90", 90, 1), ("p99", 99, 1), ("p999", 999, 10))
_EVENT = "host, ts_ns, cpu, pid, comm, zone, node, zone_name, lock_addr, zone_ptr, caller, caller_addr"


def _bits(expr: str) -> str:
    """log2 bucket (bit length) of a non-negative integer: 0 for 0."""
    return f"CASE WHEN {expr} <= 0 THEN 0 ELSE LENGTH(BIN({expr})) END"


#: The finest grouping the report's counters are sums of.
COUNTED = ("host", "zone", "node", "zone_name", "lock_addr", "zone_ptr", "caller", "caller_addr", "cpu", "pid", "comm",
           "bucket")


def counters() -> str:
    """Per host, zone, caller, CPU, task and batch-size bucket: contended events, acquisitions, contended ones,
    the three pairing anomalies, holds with a batch size, and the first and last timestamp of the rows the
    timeline counts. Every group of the report sums these rows (a few hundred per host)."""
    rows = " UNION ALL ".join([
        f"SELECT {_EVENT}, CAST(NULL AS INT) AS batch, 1 AS ce, 0 AS acq, 0 AS cont, 0 AS um, 0 AS ur, 0 AS br, "
        "0 AS hb, 1 AS tl, CAST(NULL AS BIGINT) AS w0 FROM contended",
        f"SELECT {_EVENT}, CAST(NULL AS INT), 1, 0, 0, 0, 0, 0, 0, 1, wait_ns FROM stock_waits",  # ts_ns: its end
        f"SELECT {_EVENT}, batch, 0, 1, CASE WHEN contended THEN 1 ELSE 0 END, 0, 0, 0, "
        "CASE WHEN hold_ns IS NOT NULL AND batch IS NOT NULL THEN 1 ELSE 0 END, 1, CAST(NULL AS BIGINT) "
        "FROM acquisitions",
        f"SELECT {_EVENT}, CAST(NULL AS INT), 0, 0, 0, CASE WHEN kind = 'unmatched_unlock' THEN 1 ELSE 0 END, "
        "CASE WHEN kind = 'unreleased' THEN 1 ELSE 0 END, CASE WHEN kind = 'broken_by_missed' THEN 1 ELSE 0 END, "
        "0, 0, CAST(NULL AS BIGINT) FROM pairing"])
    sums = ", ".join(f"SUM({c})" for c in ("ce", "acq", "cont", "um", "ur", "br", "hb"))
    keys = ", ".join(COUNTED)
    # The timeline's extent: stock waits are binned when they began (contended) and when they ended (waits).
    first = "MIN(CASE WHEN tl = 1 THEN ts_ns - COALESCE(w0, 0) END)"
    return (f"SELECT {keys}, {sums}, {first}, MAX(CASE WHEN tl = 1 THEN ts_ns END) "
            f"FROM (SELECT *, {_bits('batch')} AS bucket FROM ({rows}) r) ev GROUP BY {keys}")


DIMENSIONS = ("total", "zone", "caller", "batch", "cpu", "task", "host")
_DIM_SOURCE = {
    "total": (), "zone": (("k_zone", "zone"), ("k_node", "node"), ("k_zname", "zone_name"), ("k_lock", "lock_addr"),
                          ("k_ptr", "zone_ptr")),
    "caller": (("k_caller", "caller"), ("k_addr", "caller_addr")), "batch": (("k_int", "bucket"),),
    "cpu": (("k_host", "host"), ("k_int", "CAST(cpu AS BIGINT)")),
    "task": (("k_host", "host"), ("k_int", "CAST(pid AS BIGINT)"), ("k_comm", "comm")), "host": (("k_host", "host"),),
}


def _dim_keys(dim: str, one_host: bool) -> list[tuple[str, str]]:
    """(key column, its expression) of a dimension: callers pooled by symbol across hosts (their addresses
    differ between kernels); CPUs, tasks and hosts per host."""
    return [(k, e) for k, e in _DIM_SOURCE[dim] if one_host or k != "k_addr"]


def values(dim: str, one_host: bool) -> str:
    """The dimension's groups' wait and hold values counted per distinct value (materialized as ``vc``, one
    dimension at a time: narrow rows, so a thousand hosts' values fit)."""
    samples = " UNION ALL ".join([
        "SELECT host, zone, node, zone_name, lock_addr, zone_ptr, caller, caller_addr, cpu, pid, comm, "
        "'wait' AS which, wait_ns AS v, CAST(NULL AS INT) AS batch FROM acquisitions WHERE wait_ns IS NOT NULL",
        "SELECT host, zone, node, zone_name, lock_addr, zone_ptr, caller, caller_addr, cpu, pid, comm, 'wait', "
        "wait_ns, CAST(NULL AS INT) FROM stock_waits",
        "SELECT host, zone, node, zone_name, lock_addr, zone_ptr, caller, caller_addr, cpu, pid, comm, 'hold', "
        "hold_ns, batch FROM acquisitions WHERE hold_ns IS NOT NULL"])
    keys = _dim_keys(dim, one_host)
    select = "".join(f"{e} AS {k}, " for k, e in keys)
    names = "".join(f"{k}, " for k, _ in keys)
    where = " WHERE which = 'hold' AND batch IS NOT NULL" if dim == "batch" else ""
    return (f"SELECT {names}which, v, COUNT(*) AS cnt FROM (SELECT {select}which, v FROM "
            f"(SELECT *, {_bits('batch')} AS bucket FROM ({samples}) r){where}) s GROUP BY {names}which, v")


def _generic(d: Dialect, dim: str, one_host: bool) -> str:
    """The dimension's own key columns among the generic ones (the rest typed nulls), for the output rows."""
    own = {k for k, _ in _dim_keys(dim, one_host)}
    return ", ".join(name if name in own else f"CAST(NULL AS {d.string if kind == 's' else kind}) AS {name}"
                     for name, kind in KEY_COLUMNS)


def stats(d: Dialect, dim: str, one_host: bool) -> str:
    """count, exact sum, min, max and the nearest-rank percentiles of every group in ``vc``."""
    names = "".join(f"{k}, " for k, _ in _dim_keys(dim, one_host))
    part = f"PARTITION BY {names}which"
    pcts = ", ".join(f"MIN(CASE WHEN upto * {100 * den} >= n * {num} THEN v END) AS {label}"
                     for label, num, den in PERCENT)
    return (f"WITH c AS (SELECT {names}which, v, cnt, "
            f"SUM(cnt) OVER ({part} ORDER BY v ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS upto, "
            f"SUM(cnt) OVER ({part}) AS n FROM vc) "
            f"SELECT '{dim}' AS dim, {_generic(d, dim, one_host)}, which, MAX(n), SUM(CAST(v AS DECIMAL(38, 0)) * cnt), "
            f"MIN(v), MAX(v), {pcts} FROM c GROUP BY {names}which")


def histograms(d: Dialect, dim: str, one_host: bool) -> str:
    """Every group's histograms in ``vc`` as "bucket:count,..." texts: log2 (bucket = bit length) and, for the
    groups merge can pool (not CPUs, tasks or hosts), log-linear (bucket = the value with all but its 7 most
    significant bits cleared)."""
    names = "".join(f"{k}, " for k, _ in _dim_keys(dim, one_host))
    bits = _bits("v")
    kinds = {"log2": bits}
    if dim in ("total", "zone", "caller", "batch"):
        kinds["loglinear"] = f"v - v % CAST(POWER(2, GREATEST({bits} - 7, 0)) AS BIGINT)"
    text = f"CAST(b AS {d.string}) || ':' || CAST(c AS {d.string})"
    return " UNION ALL ".join(
        f"SELECT '{dim}' AS dim, {_generic(d, dim, one_host)}, which, '{kind}' AS kind, {d.agg(text)} FROM "
        f"(SELECT {names}which, {bucket} AS b, SUM(cnt) AS c FROM vc GROUP BY {names}which, {bucket}) h "
        f"GROUP BY {names}which" for kind, bucket in kinds.items())


_KEYS_NO_TS = "host, cpu, pid, comm, zone, node, zone_name, lock_addr, zone_ptr, caller, caller_addr"


def _binned_rows() -> str:
    """The rows the timeline counts, with its six counters (zlperf.analysis.timeline.COLUMNS) as columns and
    ``lb``, the wait's log2 bucket (the latency heatmap). A stock wait is two rows: its contended event when
    it began (ts_ns - wait_ns), its wait when it ended (ts_ns), as the analysis dates them."""
    return " UNION ALL ".join([
        f"SELECT {_KEYS_NO_TS}, ts_ns, 1 AS ce, 0 AS acq, 0 AS w, 0 AS wv, 0 AS h, 0 AS hv, "
        "CAST(NULL AS BIGINT) AS lb FROM contended",
        f"SELECT {_KEYS_NO_TS}, ts_ns - wait_ns, 1, 0, 0, 0, 0, 0, CAST(NULL AS BIGINT) FROM stock_waits",
        f"SELECT {_KEYS_NO_TS}, ts_ns, 0, 0, 1, wait_ns, 0, 0, {_bits('wait_ns')} FROM stock_waits",
        f"SELECT {_KEYS_NO_TS}, ts_ns, 0, 1, CASE WHEN wait_ns IS NULL THEN 0 ELSE 1 END, COALESCE(wait_ns, 0), "
        f"CASE WHEN hold_ns IS NULL THEN 0 ELSE 1 END, COALESCE(hold_ns, 0), {_bits('wait_ns')} FROM acquisitions"])


_SUMS = "SUM(ce), SUM(acq), SUM(w), SUM(wv), SUM(h), SUM(hv)"


def timeline(d: Dialect) -> str:
    """Per host and report bin: the timeline counters, then (rows with ``lb`` set) the waits per log2 bucket
    of the latency heatmap. A row's bin is its fine bin (ts // bin_ns, the width the analysis' timeline ended
    with) counted from the window's first, ``factor`` fine bins per report bin."""
    fine = d.idiv("r.ts_ns", "p.bin_ns")
    binned = (f"SELECT r.*, {d.idiv(f'{fine} - p.lo_bin', 'p.factor')} AS b FROM ({_binned_rows()}) r "
              "JOIN params p ON r.host = p.host")
    return (f"WITH t AS ({binned}) SELECT host, b, CAST(NULL AS BIGINT) AS lb, {_SUMS} FROM t GROUP BY host, b "
            f"UNION ALL SELECT host, b, lb, SUM(w), 0, 0, 0, 0, 0 FROM t WHERE w = 1 GROUP BY host, b, lb")


def slices(d: Dialect) -> str:
    """Per host, zone and caller: the counters over ten equal slices of the window. A fine bin goes to the
    slice its centre falls in, computed in doubles exactly as zlperf.analysis.timeline.Timeline.slices does:
    floor(((bin + 0.5) * bin_ns - first) * 10 / span)."""
    fine = d.idiv("r.ts_ns", "p.bin_ns")
    slice_ = (f"CAST(FLOOR((((CAST({fine} AS DOUBLE) + 0.5) * CAST(p.bin_ns AS DOUBLE) - CAST(p.lo AS DOUBLE)) "
              "* 10.0) / CAST(p.span AS DOUBLE)) AS BIGINT)")
    inner = f"SELECT r.*, {slice_} AS sl FROM ({_binned_rows()}) r JOIN params p ON r.host = p.host"
    zone = "host, zone, node, zone_name, lock_addr, zone_ptr"
    return (f"WITH t AS ({inner}) "
            f"SELECT 'zone' AS dim, {zone}, CAST(NULL AS {d.string}) AS caller, CAST(NULL AS {d.string}) AS "
            f"caller_addr, sl, {_SUMS} FROM t WHERE sl >= 0 AND sl < 10 GROUP BY {zone}, sl UNION ALL "
            f"SELECT 'caller', host, CAST(NULL AS {d.string}), CAST(NULL AS INT), CAST(NULL AS {d.string}), "
            f"CAST(NULL AS {d.string}), CAST(NULL AS {d.string}), caller, caller_addr, sl, {_SUMS} FROM t "
            "WHERE sl >= 0 AND sl < 10 GROUP BY host, caller, caller_addr, sl")


_HOLDER = ("holder_caller, holder_pid, holder_comm, holder_cpu, holder_release_ts_ns, holder_hold_ns, holder_batch, "
           "holder_waited")


def worst(d: Dialect, top: int) -> str:
    """Per host: the ``top`` longest waits and holds (with the wait's holder), longest first. Only rows at
    or above the host's ``top``-th longest value (from the "host" dimension's ``vc``) are ranked."""
    n = f"CAST(NULL AS {d.string})"
    holder_nulls = (f"{n}, CAST(NULL AS INT), {n}, CAST(NULL AS INT), CAST(NULL AS BIGINT), CAST(NULL AS BIGINT), "
                    "CAST(NULL AS INT), CAST(NULL AS BOOLEAN)")
    rows = " UNION ALL ".join([
        f"SELECT 'wait' AS which, wait_ns AS v, {_EVENT}, CAST(NULL AS INT) AS batch, seq, {_HOLDER} "
        "FROM acquisitions WHERE wait_ns IS NOT NULL",
        f"SELECT 'wait', wait_ns, {_EVENT}, CAST(NULL AS INT), CAST(0 AS BIGINT), {holder_nulls} FROM stock_waits",
        f"SELECT 'hold', hold_ns, {_EVENT}, batch, seq, {holder_nulls} FROM acquisitions WHERE hold_ns IS NOT NULL"])
    above = ("SELECT k_host AS host, which, v, SUM(cnt) OVER (PARTITION BY k_host, which ORDER BY v DESC "
             "ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS above FROM vc")
    return (f"WITH a AS ({above}), th AS (SELECT host, which, MAX(v) AS t FROM a WHERE above >= {int(top)} "
            "GROUP BY host, which) "
            "SELECT * FROM (SELECT r.*, ROW_NUMBER() OVER (PARTITION BY r.host, r.which ORDER BY r.v DESC, r.ts_ns, "
            f"r.cpu, r.seq) AS rn FROM ({rows}) r LEFT JOIN th ON r.host = th.host AND r.which = th.which "
            f"WHERE r.v >= COALESCE(th.t, 0)) t WHERE rn <= {int(top)} ORDER BY host, which, rn")


_NT = f"'{NOT_TRACED}'"
_NA = f"'{NO_ACQUISITION}'"


def holder_totals() -> str:
    """Per host: attributed waits, their wait, those not traced (and their wait), those behind a release
    without an acquisition, and hand-offs."""
    return (f"SELECT host, COUNT(*), SUM(wait_ns), SUM(CASE WHEN holder_caller = {_NT} THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN holder_caller = {_NT} THEN wait_ns ELSE 0 END), "
            f"SUM(CASE WHEN holder_caller = {_NA} THEN 1 ELSE 0 END), "
            "SUM(CASE WHEN holder_waited THEN 1 ELSE 0 END) FROM acquisitions WHERE holder_caller IS NOT NULL "
            "GROUP BY host")


def handoffs() -> str:
    """Per host: waits and wait per (waiter caller, holder caller)."""
    return ("SELECT host, caller, holder_caller, COUNT(*), SUM(wait_ns) FROM acquisitions "
            "WHERE holder_caller IS NOT NULL GROUP BY host, caller, holder_caller")


def top_holders(top: int) -> str:
    """Per host: the ``top`` holders (caller, task, CPU) that cost the most wait."""
    return ("SELECT * FROM (SELECT host, holder_caller, holder_pid, holder_cpu, MAX(holder_comm) AS comm, "
            "COUNT(*) AS waits, SUM(wait_ns) AS s, ROW_NUMBER() OVER (PARTITION BY host ORDER BY SUM(wait_ns) DESC, "
            "COUNT(*) DESC, holder_caller, holder_pid, holder_cpu) AS rn FROM acquisitions "
            f"WHERE holder_caller IS NOT NULL AND holder_caller <> {_NT} "
            f"GROUP BY host, holder_caller, holder_pid, holder_cpu) t WHERE rn <= {int(top)} ORDER BY host, rn")


def convoys() -> str:
    """Per host: how many maximal chains of back-to-back contended acquisitions had each length (also by
    whether the last wait had a traced holder, which the zone_lock:* series needs)."""
    return (f"SELECT host, convoy_length, CASE WHEN holder_caller = {_NT} THEN 1 ELSE 0 END AS nt, COUNT(*) "
            "FROM acquisitions WHERE convoy_end GROUP BY host, convoy_length, "
            f"CASE WHEN holder_caller = {_NT} THEN 1 ELSE 0 END")


def stacks() -> str:
    """Per host and stack: contended events with that kernel stack."""
    return ("SELECT host, stack_id, COUNT(*) FROM (SELECT host, stack_id FROM contended UNION ALL "
            "SELECT host, stack_id FROM stock_waits) s WHERE stack_id IS NOT NULL GROUP BY host, stack_id")
