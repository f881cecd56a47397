"""``zlperf merge A.json B.json ...``: one summary from many hosts' reports."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge", help="merge report JSON documents from many hosts into one",
        description="Merge `zlperf report --json` documents: exact counts and histograms; "
                    "percentiles of merged groups from the merged histogram.",
        epilog="examples:\n  zlperf merge host*.json > fleet.json\n  zlperf merge a.json b.json --text\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("reports", nargs="+", metavar="REPORT.json")
    p.add_argument("--text", action="store_true", help="print the merged report as text instead of JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zlperf.analysis.compare import load_report, merge_reports

    docs = [load_report(p) for p in args.reports]
    merged = merge_reports(docs, [Path(p).stem for p in args.reports])
    if args.text:
        from zlperf.render.text import render_text

        sys.stdout.write(render_text(merged))
    else:
        json.dump(merged, sys.stdout, indent=1)
        sys.stdout.write("\n")
    return 0
