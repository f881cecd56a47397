"""``zlperf report``: analyse a recording and print the report (text, JSON or CSV)."""

from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import Optional

from zlperf.errors import ZlperfError

_EXAMPLES = """examples:
  zlperf report --example                      # the embedded real recording (patched 6.12 kernel, QEMU)
  zlperf report trace.dat                      # zones and callers, waits, holds, timeline, worst cases
  zlperf report trace.dat --by cpu,task --top 5
  zlperf report trace.dat --since 19.5 --until 20.5 --zone 1:Normal
  zlperf report trace.dat --json > host1.json  # for zlperf merge / zlperf diff
  zlperf report trace.dat --csv --by caller    # one table, for a spreadsheet
"""


def example_path() -> Path:
    """The embedded example recording shipped in the package."""
    return Path(str(resources.files("zlperf.data") / "full.dat"))


def parse_seconds(text: str, flag: str) -> int:
    """Trace-clock seconds as trace-cmd prints them (e.g. ``19.472100865``) -> ns."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ZlperfError(f"{flag} {text!r}: expected seconds like 19.4721 (as trace-cmd report prints them)")
    return int(value * 10**9)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="analyse a trace.dat and print the zone-lock report",
        description="Analyse a zone-lock recording: contention, waits, holds, callers, timeline.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", nargs="?", help="trace.dat to read (default: trace.dat, like trace-cmd report)")
    p.add_argument("-i", dest="input", metavar="FILE", help="input file (same as the positional FILE)")
    p.add_argument("--example", action="store_true", help="report on the embedded example recording")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print the zlperf.report/1 JSON document")
    fmt.add_argument("--csv", action="store_true", help="print the --by table as CSV")
    p.add_argument("--by", default="zone,caller", help="group tables: zone,caller,cpu,task (comma list)")
    p.add_argument("--top", type=int, default=10, metavar="N", help="rows per table and worst cases (default 10)")
    p.add_argument("--since", metavar="SECS", help="ignore events before this trace timestamp")
    p.add_argument("--until", metavar="SECS", help="ignore events after this trace timestamp")
    p.add_argument("--zone", metavar="NODE:NAME", help="only this zone, e.g. 1:Normal")
    p.add_argument("--abi", choices=["auto", "kmem", "series", "stock"], default="auto",
                   help="which events to read when a file has several ABIs (default: the patch's kmem events, "
                        "then zone_lock:*, then lock:contention_*)")
    p.add_argument("--reader", choices=["auto", "fast", "libtracecmd"], default="auto",
                   help="trace.dat reader (default: the fast numpy reader)")
    p.add_argument("--kallsyms", metavar="FILE", help="symbols to use instead of those saved in the file")
    rec = p.add_mutually_exclusive_group()
    rec.add_argument("--recipe", metavar="FILE", help="take analysis settings (zone_lock_frames) from this recipe")
    rec.add_argument("--profile", metavar="NAME", help="the same, from a recipe found by name")
    p.add_argument("--folded", metavar="FILE",
                   help="write contended stacks as folded lines (flamegraph.pl, speedscope) to FILE")
    p.set_defaults(func=run)


def _dimensions(text: str) -> list[str]:
    dims = [d.strip() for d in text.split(",") if d.strip()]
    bad = [d for d in dims if d not in ("zone", "caller", "cpu", "task")]
    if bad or not dims:
        raise ZlperfError(f"--by {text!r}: choose from zone, caller, cpu, task (comma-separated)")
    return dims


def build_report(path: str, args: argparse.Namespace) -> dict:
    """Open ``path``, analyse it with the options in ``args``, return the report document."""
    from zlperf.analysis.core import AnalysisOptions, analyze
    from zlperf.readers import open_trace

    options = AnalysisOptions(
        since_ns=parse_seconds(args.since, "--since") if args.since else None,
        until_ns=parse_seconds(args.until, "--until") if args.until else None,
        zone=args.zone, top=args.top, abi=getattr(args, "abi", "auto"),
    )
    ref = getattr(args, "recipe", None) or getattr(args, "profile", None)
    if ref:
        from zlperf.recipes import load_recipe

        recipe = load_recipe(ref)
        if recipe.zone_lock_frames:  # stock kernels: which frames mark a zone->lock wait
            options.zone_lock_frames = {fn: f"from recipe {recipe.path}" for fn in recipe.zone_lock_frames}
    with open_trace(path, reader=args.reader, kallsyms=args.kallsyms) as reader:
        return analyze(reader, options)


def run(args: argparse.Namespace) -> int:
    if args.example:
        path: Optional[str] = str(example_path())
    else:
        path = args.input or args.file or "trace.dat"
    if not Path(path).exists():
        raise ZlperfError(f"{path}: no such file (give a trace.dat, or try `zlperf report --example`)")
    dims = _dimensions(args.by)
    doc = build_report(path, args)
    for warning in doc["warnings"]:
        print(f"zlperf: warning: {path}: {warning}", file=sys.stderr)
    if args.folded:
        from zlperf.render.text import render_folded

        if not doc["contended_stacks"]:
            print(f"zlperf: warning: {path}: no stacks recorded with the contended events: {args.folded} is empty "
                  "(record with stacks: perf record -g, trace-cmd -T, or --profile stock)", file=sys.stderr)
        try:
            with open(args.folded, "w", encoding="utf-8") as fh:
                fh.write(render_folded(doc))
        except OSError as exc:
            raise ZlperfError(f"{args.folded}: cannot write folded stacks ({exc.strerror})")
    if args.json:
        json.dump(doc, sys.stdout, indent=1)
        sys.stdout.write("\n")
    elif args.csv:
        from zlperf.render.csv import render_csv

        sys.stdout.write(render_csv(doc, dims[0]))
    else:
        from zlperf.render.text import render_text

        sys.stdout.write(render_text(doc, by=dims, top=args.top))
    return 0
