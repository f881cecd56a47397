"""``zlperf diff A B``: two recordings (trace.dat, perf.data or report JSON) side by side, noise-aware."""

from __future__ import annotations

import argparse
import json
import sys

from zlperf.commands.report import analyze_file, non_negative


def load_any(path: str, args: argparse.Namespace) -> dict:
    """The report document of ``path``: a ``--json`` file read back (checked), or a trace analysed."""
    from zlperf.report import build_document, load_result
    from zlperf.safeio import check_input

    check_input(path, "recording or report document")
    with open(path, "rb") as fh:
        head = fh.read(64).lstrip()
    result = load_result(path) if head.startswith(b"{") else analyze_file(path, args)
    return build_document(result)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diff", help="compare two recordings (before/after a tuning change)",
        description="Compare two recordings per zone and caller; flag changes beyond the runs' own noise.",
        epilog="examples:\n  zlperf diff before.dat after.dat\n  zlperf diff before.json after.json --json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("a", help="the baseline: trace.dat, perf.data or `zlperf report --json` output")
    p.add_argument("b", help="the candidate")
    p.add_argument("--json", action="store_true", help="print the zlperf.diff/1 JSON document")
    p.add_argument("--reader", choices=["auto", "fast", "libtracecmd"], default="auto")
    p.add_argument("--top", type=non_negative, default=10, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from zlperf.render.text import render_diff
    from zlperf.report import diff_documents

    result = diff_documents(load_any(args.a, args), load_any(args.b, args))
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_diff(result))
    return 0
