"""``zlperf report``: analyse a recording and print the report (text, JSON or CSV)."""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING

from zlperf.errors import ZlperfError

if TYPE_CHECKING:
    from zlperf.analysis import AnalysisOptions, AnalysisResult

_EXAMPLES = """examples:
  zlperf report --example                      # the embedded real recording (patched 6.12 kernel, QEMU)
  zlperf report trace.dat                      # zones and callers, waits, holds, timeline, worst cases
  zlperf report trace.dat --by cpu,task --top 5
  zlperf report trace.dat --since 19.5 --until 20.5 --zone 1:Normal
  zlperf report trace.dat --json > host1.json  # for zlperf merge / zlperf diff
  zlperf report trace.dat --csv --by caller    # one table, for a spreadsheet
  zlperf report trace.dat --by holder          # who held zone->lock while the others waited
  zlperf report trace.dat --html report.html   # one offline page: plots, sortable tables, the text report
  zlperf report trace.dat --plot figs/         # the same figures as PNG and SVG files
"""


def example_path() -> Path:
    """The embedded example recording shipped in the package (a file beside the modules: importlib.resources
    would cost start-up time for nothing, and the readers need a real file)."""
    import zlperf.data

    return Path(zlperf.data.__file__).resolve().parent / "full.dat"


def parse_seconds(text: str, flag: str) -> int:
    """Trace-clock seconds as trace-cmd prints them (e.g. ``19.472100865``) -> ns."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        value = None
    # Trace clocks count ns in a u64: a timestamp is finite, not negative and below 2^64 ns (584 years).
    if value is None or not value.is_finite() or value < 0 or value * 10**9 >= 2**64:
        raise ZlperfError(f"{flag} {text!r}: expected seconds like 19.4721 (as trace-cmd report prints them)")
    return int(value * 10**9)


def non_negative(text: str) -> int:
    """argparse type for counts such as --top: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give 0 or more")
    return value


def positive(text: str) -> int:
    """argparse type for --jobs: an integer >= 1."""
    value = non_negative(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give 1 or more")
    return value


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
    p.add_argument("--by", default=None,
                   help="group tables: zone,caller,cpu,task,holder (comma list; --csv: the first; "
                        "default: the recipe's report.by, else zone,caller)")
    p.add_argument("--top", type=non_negative, default=None, metavar="N",
                   help="rows per table and worst cases (default: the recipe's report.top, else 10)")
    p.add_argument("--since", metavar="SECS", help="ignore events before this trace timestamp")
    p.add_argument("--until", metavar="SECS", help="ignore events after this trace timestamp")
    p.add_argument("--zone", metavar="NODE:NAME", help="only this zone, e.g. 1:Normal (default: the recipe's report.zone)")
    p.add_argument("--abi", choices=["auto", "kmem", "series", "stock"], default="auto",
                   help="which events to read when a file has several ABIs (default: the patch's kmem events, "
                        "then zone_lock:*, then lock:contention_*)")
    p.add_argument("--reader", choices=["auto", "fast", "libtracecmd"], default="auto",
                   help="trace.dat reader (default: the fast numpy reader)")
    p.add_argument("--kallsyms", metavar="FILE", help="symbols to use instead of those saved in the file")
    p.add_argument("-j", "--jobs", type=positive, default=None, metavar="N",
                   help="processes, this one included: the recording's CPUs are analysed in N parts at once "
                        "and merged (default: ZLPERF_JOBS, else 1 + the idle cores, for large files; the "
                        "report is the same whatever N)")
    rec = p.add_mutually_exclusive_group()
    rec.add_argument("--recipe", metavar="FILE",
                     help="take analysis settings (zone_lock_frames) and report defaults (by, top, zone) from this recipe")
    rec.add_argument("--profile", metavar="NAME", help="the same, from a recipe found by name")
    p.add_argument("--folded", metavar="FILE",
                   help="write contended stacks as folded lines (flamegraph.pl, speedscope) to FILE")
    p.add_argument("--html", metavar="OUT",
                   help="also write a self-contained HTML report with interactive plots (pip install 'zlperf[html]')")
    p.add_argument("--plot", metavar="DIR",
                   help="also write the report's figures as PNG and SVG into DIR (pip install 'zlperf[plots]')")
    p.set_defaults(func=run, nothing_left_at_exit=True, no_blas_threads=True, keep_freed_memory=True)


def _dimensions(text: str) -> list[str]:
    dims = [d.strip() for d in text.split(",") if d.strip()]
    bad = [d for d in dims if d not in ("zone", "caller", "cpu", "task", "holder")]
    if bad or not dims:
        raise ZlperfError(f"--by {text!r}: choose from zone, caller, cpu, task, holder (comma-separated)")
    return dims


def analysis_options(args: argparse.Namespace) -> "AnalysisOptions":
    """The analysis options of ``report``-like commands (window, zone, top, ABI, recipe frames)."""
    from zlperf.analysis import AnalysisOptions

    since = parse_seconds(args.since, "--since") if getattr(args, "since", None) else None
    until = parse_seconds(args.until, "--until") if getattr(args, "until", None) else None
    if since is not None and until is not None and since > until:
        raise ZlperfError(f"--since {args.since} is after --until {args.until}: give the earlier time first")
    options = AnalysisOptions(since_ns=since, until_ns=until, zone=getattr(args, "zone", None),
                              top=getattr(args, "top", 10), abi=getattr(args, "abi", "auto"))
    ref = getattr(args, "recipe", None) or getattr(args, "profile", None)
    if ref:
        from zlperf.recipes import load_recipe

        recipe = load_recipe(ref)
        if recipe.zone_lock_frames:  # stock kernels: which frames mark a zone->lock wait
            options.zone_lock_frames = {fn: f"from recipe {recipe.path}" for fn in recipe.zone_lock_frames}
    return options


def analyze_file(path: str, args: argparse.Namespace) -> "AnalysisResult":
    """Open ``path`` (trace.dat or perf.data), analyse it with the options in ``args``."""
    from zlperf.analysis import analyze
    from zlperf.readers import open_trace

    options = analysis_options(args)
    with open_trace(path, reader=getattr(args, "reader", "auto"), kallsyms=getattr(args, "kallsyms", None),
                    jobs=getattr(args, "jobs", None)) as reader:
        return analyze(reader, options)


def apply_report_defaults(args: argparse.Namespace) -> None:
    """Fill --by, --top and --zone not given on the command line from the recipe's ``report:`` defaults."""
    ref = getattr(args, "recipe", None) or getattr(args, "profile", None)
    defaults: dict = {}
    if ref:
        from zlperf.recipes import load_recipe

        defaults = load_recipe(ref).report
    if getattr(args, "by", None) is None:
        args.by = defaults.get("by", "zone,caller")
    if getattr(args, "top", None) is None:
        args.top = defaults.get("top", 10)
    if getattr(args, "zone", None) is None:
        args.zone = defaults.get("zone")


def run(args: argparse.Namespace) -> int:
    from zlperf.report import build_document

    path = str(example_path()) if args.example else (args.input or args.file or "trace.dat")
    apply_report_defaults(args)
    dims = _dimensions(args.by)
    outputs = figure_outputs(args)  # checked before the analysis: a missing library or bad path fails fast
    doc = build_document(analyze_file(path, args))
    for warning in doc["warnings"]:
        print(f"zlperf: warning: {path}: {warning}", file=sys.stderr)
    if args.folded:
        from zlperf.render.text import render_folded
        from zlperf.safeio import atomic_write

        if not doc["contended_stacks"]:
            print(f"zlperf: warning: {path}: no stacks recorded with the contended events: {args.folded} is empty "
                  "(record with stacks: perf record -g, trace-cmd -T, or --profile stock)", file=sys.stderr)
        atomic_write(args.folded, render_folded(doc), "folded stacks")
    write_figures(doc, outputs, getattr(args, "top", 10))
    write_document(doc, args, dims)
    return 0


def write_document(doc: dict, args: argparse.Namespace, dims: list[str], *, default: str = "text") -> None:
    """Print the report document as --json, --csv or text: one writer, so report, fleet and merge print it alike."""
    # A flag picks the format (--csv: the first of dims); without one, ``default`` (merge: JSON unless --text).
    flags = [f for f in ("json", "csv", "text") if getattr(args, f, False)]
    fmt = flags[0] if flags else default
    if fmt == "json":
        from zlperf.report.jsontext import json_text

        sys.stdout.write(json_text(doc) + "\n")
    elif fmt == "csv":
        from zlperf.render.csv import render_csv

        sys.stdout.write(render_csv(doc, dims[0]))
    else:
        from zlperf.render.text import render_text

        sys.stdout.write(render_text(doc, by=dims, top=getattr(args, "top", 10)))


def figure_outputs(args: argparse.Namespace) -> dict:
    """The --html file and --plot folder of ``args``, checked (and their libraries imported) before any work."""
    out: dict = {}
    if getattr(args, "html", None):
        from zlperf.extras import require
        from zlperf.safeio import check_output

        require("plotly", "html")
        out["html"] = check_output(args.html, "HTML report")
    if getattr(args, "plot", None):
        from zlperf.render.plots import check_plot_dir

        out["plot"] = check_plot_dir(args.plot)
    return out


def write_figures(doc: dict, outputs: dict, top: int = 10) -> None:
    """Write the HTML page and the figure files asked for (``outputs`` from :func:`figure_outputs`)."""
    if "html" in outputs:
        from zlperf.render.html import render_html
        from zlperf.safeio import atomic_write

        atomic_write(outputs["html"], render_html(doc, top=top), "HTML report")
        print(f"zlperf: wrote {outputs['html']} (one file, opens offline in any browser)", file=sys.stderr)
    if "plot" in outputs:
        from zlperf.render.plots import write_plots

        written = write_plots(doc, outputs["plot"])
        print(f"zlperf: wrote {len(written)} figure files into {outputs['plot']}", file=sys.stderr)
