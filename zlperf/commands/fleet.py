"""``zlperf fleet PATH...``: one exact report from many hosts' Parquet tables, on DuckDB or Spark."""

from __future__ import annotations

import argparse
import sys

from zlperf.commands.report import _dimensions, figure_outputs, non_negative, write_document, write_figures
from zlperf.errors import ZlperfError

_EXAMPLES = """examples:
  zlperf export trace.dat --parquet fleet/ --host web7   # on each host (or on copies of their recordings)
  zlperf fleet fleet/                                     # every host=NAME folder under fleet/, DuckDB in-process
  zlperf fleet a/host=web7 b/host=db2 --by zone,caller,host
  zlperf fleet fleet/ --json > fleet.json                # the zlperf.report/1 document, plus its hosts table
  zlperf fleet fleet/ --csv --by host                    # one row per host
  zlperf fleet fleet/ --html fleet.html                  # also one offline HTML page: plots, sortable tables
  zlperf fleet hdfs-mounted/fleet --engine spark --master spark://head:7077   # on a Spark cluster
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fleet", help="one exact report from many hosts' Parquet tables (DuckDB or Spark)",
        description="Read the Parquet tables of any number of hosts (zlperf export --parquet) and print the report "
                    "zlperf report prints, for all of them: counts, zones, callers, holders, timeline, worst "
                    "cases, with exact nearest-rank percentiles computed by the engine over the pooled values, "
                    "and a table of the hosts.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="a host's folder (DIR/host=NAME) or a folder of them (DIR)")
    p.add_argument("--engine", choices=["duckdb", "spark"], default="duckdb",
                   help="duckdb: embedded, this process (default); spark: pyspark, local[*] or --master")
    p.add_argument("--master", metavar="URL", help="--engine spark: the cluster (spark://host:7077, yarn, ...); "
                                                   "default local[*]")
    p.add_argument("--conf", metavar="KEY=VALUE", action="append", default=[],
                   help="--engine spark: a Spark setting, e.g. spark.driver.memory=4g (repeatable)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the zlperf.report/1 JSON document")
    fmt.add_argument("--csv", action="store_true", help="print the --by table as CSV")
    p.add_argument("--html", metavar="OUT",
                   help="also write a self-contained HTML report with interactive plots (pip install 'zlperf[html]')")
    p.add_argument("--by", default="zone,caller,host",
                   help="group tables: zone,caller,cpu,task,holder,host (comma list; --csv: the first)")
    p.add_argument("--top", type=non_negative, default=10, metavar="N",
                   help="rows per table and worst cases (default 10)")
    p.set_defaults(func=run)


def _conf(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ZlperfError(f"--conf {item!r}: give KEY=VALUE, e.g. spark.driver.memory=4g")
        out[key.strip()] = value
    return out


def run(args: argparse.Namespace) -> int:
    from zlperf.fleet import fleet_report
    from zlperf.report import build_document

    by = [d.strip() for d in args.by.split(",") if d.strip()]
    dims = [d for d in by if d != "host"]
    if dims:
        _dimensions(",".join(dims))
    if not by:
        raise ZlperfError(f"--by {args.by!r}: choose from zone, caller, cpu, task, holder, host (comma-separated)")
    if args.conf and args.engine != "spark":
        raise ZlperfError("--conf is for --engine spark")
    outputs = figure_outputs(args)  # checked before any engine starts
    doc = build_document(fleet_report(args.paths, args.engine, args.master, args.top, _conf(args.conf)))
    for warning in doc["warnings"]:
        print(f"zlperf: warning: {warning}", file=sys.stderr)
    write_figures(doc, outputs, args.top)
    write_document(doc, args, by)  # by, not dims: the host table is one of fleet's
    return 0
