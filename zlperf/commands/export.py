"""``zlperf export FILE --perfetto OUT.pftrace | --parquet DIR``: a recording in another tool's format."""

from __future__ import annotations

import argparse

from zlperf.commands.report import example_path

_EXAMPLES = """examples:
  zlperf export trace.dat --perfetto trace.pftrace     # open in https://ui.perfetto.dev ("Open trace file")
  zlperf export --example --perfetto x.pftrace         # the embedded example recording
  zlperf export trace.dat --parquet fleet/ --host web7 # per-host Parquet tables for zlperf fleet
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="write a recording as a Perfetto trace or Parquet tables",
        description="Export a zone-lock recording (trace.dat or perf.data) for other tools.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", nargs="?", help="trace.dat or perf.data to read")
    p.add_argument("-i", dest="input", metavar="FILE", help="input file (same as the positional FILE)")
    p.add_argument("--example", action="store_true", help="export the embedded example recording")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--perfetto", metavar="OUT", help="write a Perfetto trace (pip install 'zlperf[perfetto]')")
    what.add_argument("--parquet", metavar="DIR", help="write Parquet tables under DIR (pip install 'zlperf[parquet]')")
    p.add_argument("--host", metavar="NAME", help="--parquet: the host name to partition by (default: this host)")
    p.add_argument("--abi", choices=["auto", "kmem", "series", "stock"], default="auto",
                   help="which events to read when a file has several ABIs")
    p.add_argument("--reader", choices=["auto", "fast", "libtracecmd"], default="auto", help="trace.dat reader")
    p.add_argument("--kallsyms", metavar="FILE", help="symbols to use instead of those saved in the file")
    rec = p.add_mutually_exclusive_group()
    rec.add_argument("--recipe", metavar="FILE", help="take analysis settings (zone_lock_frames) from this recipe")
    rec.add_argument("--profile", metavar="NAME", help="the same, from a recipe found by name")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = str(example_path()) if args.example else (args.input or args.file)
    if not path:
        from zlperf.errors import ZlperfError

        raise ZlperfError("export: give a trace.dat or perf.data (or --example)")
    if args.perfetto:
        from zlperf.export.perfetto import export_perfetto

        return export_perfetto(path, args.perfetto, args)
    from zlperf.export.parquet import export_parquet

    return export_parquet(path, args.parquet, args)
