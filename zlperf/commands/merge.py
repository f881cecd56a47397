"""``zlperf merge A.json B.json ...``: one report from many hosts' report documents."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "merge", help="merge report JSON documents from many hosts into one",
        description="Merge `zlperf report --json` documents: exact counts and histograms; percentiles of "
                    "groups seen on several hosts from the merged histogram (the document says so).",
        epilog="examples:\n  zlperf merge host*.json > fleet.json\n  zlperf merge a.json b.json --text\n"
               "  zlperf merge host*.json --html fleet.html > fleet.json   # the fleet report as one offline page\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("reports", nargs="+", metavar="REPORT.json")
    p.add_argument("--text", action="store_true", help="print the merged report as text instead of JSON")
    p.add_argument("--html", metavar="OUT", help="also write the merged report as a self-contained HTML page")
    p.add_argument("--plot", metavar="DIR", help="also write the merged report's figures as PNG and SVG into DIR")
    p.set_defaults(func=run)


def host_names(paths: list[str]) -> list[str]:
    """A name per input: the file's stem, made unique when two files share one."""
    names: list[str] = []
    for p in paths:
        stem = Path(p).stem or p
        name, i = stem, 2
        while name in names:
            name, i = f"{stem}#{i}", i + 1
        names.append(name)
    return names


def run(args: argparse.Namespace) -> int:
    from zlperf.report import build_document, load_result, merge_results

    from zlperf.commands.report import figure_outputs, write_document, write_figures

    outputs = figure_outputs(args)
    names = host_names(args.reports)
    results = [load_result(p, n) for p, n in zip(args.reports, names)]
    doc = build_document(merge_results(results, names))
    write_figures(doc, outputs)
    # JSON unless --text; the text has render_text's own defaults (zone and caller tables, top 10).
    write_document(doc, args, ["zone", "caller"], default="json")
    return 0
