"""``zlperf diff A B``: two recordings (trace.dat or report JSON) side by side, noise-aware."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zlperf.errors import ZlperfError


def load_any(path: str, args: argparse.Namespace) -> dict:
    """A report document from a ``--json`` file, or analysed from a trace file."""
    from zlperf.analysis.compare import load_report
    from zlperf.commands.report import build_report

    p = Path(path)
    if not p.exists():
        raise ZlperfError(f"{path}: no such file")
    with open(p, "rb") as fh:
        head = fh.read(64).lstrip()
    if head.startswith(b"{"):
        return load_report(path)
    return build_report(path, args)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diff", help="compare two recordings (before/after a tuning change)",
        description="Compare two recordings per zone and caller; flag changes beyond the runs' own noise.",
        epilog="examples:\n  zlperf diff before.dat after.dat\n  zlperf diff before.json after.json --json\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("a", help="the baseline: trace.dat or `zlperf report --json` output")
    p.add_argument("b", help="the candidate")
    p.add_argument("--json", action="store_true", help="print the zlperf.diff/1 JSON document")
    p.add_argument("--reader", choices=["auto", "fast", "libtracecmd"], default="auto")
    p.set_defaults(func=run, since=None, until=None, zone=None, top=10, kallsyms=None)


def run(args: argparse.Namespace) -> int:
    from zlperf.analysis.compare import diff_reports
    from zlperf.render.text import render_diff

    result = diff_reports(load_any(args.a, args), load_any(args.b, args))
    if args.json:
        json.dump(result, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_diff(result))
    return 0
