"""``zlperf check``: a recording (or report document) against a recipe's budgets; exit 0, 1 over budget, 2 errors."""

from __future__ import annotations

__all__ = ["register", "run", "check_and_print"]

import argparse
import socket
import sys
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Optional, TextIO

from zlperf.errors import ZlperfError, warn

if TYPE_CHECKING:
    from zlperf.recipes import Recipe

_EXAMPLES = """examples:
  zlperf check trace.dat --profile acme:ci-stock      # a pack's recipe: exit 1 when over one of its budgets
  zlperf check trace.dat --recipe ci.yaml --junit check.xml   # and a JUnit file for the CI system
  zlperf check host1.json --recipe ci.yaml            # a `zlperf report --json` document (or a merged one)
  zlperf check trace.dat --recipe ci.yaml -v          # every budget, not only those over

Budgets are upper limits in the recipe (see `zlperf recipes -h`):
  budgets:
    contention_ratio: 0.02          # overall
    wait_ns.p99: 50us
    not_traced_share: 0.3
    zones:   {"*": {hold_ns.p99: 100us}, "1:Normal": {wait_ns.p99: 80us}}   # every zone / one zone
    callers: {free_one_page: {contended_per_sec: 100}}                   # any offset of the function

Each budget over its limit is one line: what, where, measured, budget, and where the recipe sets it.
A budget the recording cannot evaluate (a hold-time budget on a wait-time recording, a zone that is not
in it) is an error: exit status 2, never a pass. Folders (fleet Parquet tables) need `zlperf fleet`.
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``check`` subcommand."""
    p = sub.add_parser(
        "check", help="check a recording against a recipe's budgets (exit 1 over budget)",
        description="Evaluate a recipe's budgets on a trace.dat, perf.data or JSON report document.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", help="trace.dat, perf.data, or a zlperf report --json document")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--recipe", metavar="R", help="recipe file (or name) holding the budgets")
    which.add_argument("--profile", metavar="NAME", help="recipe name on the search path (PACK:NAME for a pack's)")
    p.add_argument("--junit", metavar="OUT.xml", help="also write the result as JUnit XML")
    p.add_argument("-v", "--verbose", action="store_true", help="print every budget, also those within")
    p.add_argument("--abi", choices=["auto", "kmem", "series", "stock"], default="auto",
                   help="which events to read when a file has several ABIs (as zlperf report)")
    p.add_argument("--reader", choices=["auto", "fast", "libtracecmd"], default="auto", help="trace.dat reader")
    p.add_argument("--kallsyms", metavar="FILE", help="symbols to use instead of those saved in the file")
    p.set_defaults(func=run)


def _analyze(args: argparse.Namespace) -> Callable[[str], dict]:
    """Analyse a trace with the command's options (ABI, reader, kallsyms, the recipe's zone_lock_frames)."""

    def analyze_trace(path: str) -> dict:
        from zlperf.commands.report import analyze_file
        from zlperf.report import build_document

        return build_document(analyze_file(path, args))

    return analyze_trace


def check_and_print(path: str, args: argparse.Namespace, recipe: "Recipe", out: TextIO = sys.stdout,
                    junit: Optional[str] = None, verbose: bool = False) -> int:
    """Check ``path`` against ``recipe``'s budgets, print the outcome lines and the summary; the exit status."""
    from zlperf.check import check_document, document_of, exit_status, summary_line, write_junit

    started = time.monotonic()
    doc = document_of(path, _analyze(args))
    for w in doc.get("warnings") or []:
        warn(f"{path}: {w}")
    outcomes = check_document(doc, recipe)
    for o in outcomes:
        if o.status == "error":
            print(f"zlperf: {o.line}", file=sys.stderr)
        elif o.status == "over" or verbose:
            print(o.line, file=out)
    print(summary_line(outcomes, recipe, path), file=out)
    if junit:
        write_junit(junit, outcomes, suite=recipe.name, time_s=time.monotonic() - started,
                    timestamp=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"), hostname=socket.gethostname(),
                    properties={"recipe": recipe.name, "recipe_version": recipe.version or "",
                                "recipe_origin": recipe.origin, "recipe_path": recipe.path, "input": path,
                                "abi": str(doc.get("abi")), "profile": str(doc.get("profile"))})
    return exit_status(outcomes)


def run(args: argparse.Namespace) -> int:
    """Load the recipe, read FILE, evaluate; 0 within budget, 1 over, 2 when a budget cannot be evaluated."""
    from pathlib import Path

    from zlperf.recipes import is_path_ref, load_recipe
    from zlperf.safeio import check_output

    if args.junit:
        check_output(args.junit, "JUnit report")  # before the analysis, not after it
    ref = args.recipe or args.profile
    if args.recipe and (is_path_ref(args.recipe) or Path(args.recipe).exists()):
        recipe = load_recipe(Path(args.recipe), warn=warn)
    else:
        recipe = load_recipe(ref, warn=warn)
    if not recipe.budgets:
        from zlperf.check import NO_BUDGETS

        raise ZlperfError(f"{recipe.path}: recipe {recipe.name} {NO_BUDGETS}")
    return check_and_print(args.file, args, recipe, junit=args.junit, verbose=args.verbose)
