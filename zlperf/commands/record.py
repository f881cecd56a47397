"""``zlperf record``: record a recipe with trace-cmd (or a tracefs instance where that is refused) or perf."""

from __future__ import annotations

__all__ = ["register", "run"]

import argparse
import math
import shlex
import sys
from typing import TYPE_CHECKING

from zlperf.errors import ZlperfError, warn

if TYPE_CHECKING:
    from pathlib import Path

    from zlperf.recipes import Recipe

_EXAMPLES = """examples:
  zlperf record --profile hold-time -o t.dat -- CMD ARGS   # all three zone-lock events while CMD runs
  zlperf record --profile minimal --duration 10            # lowest overhead, whole system, 10 s
  zlperf record --profile stock -o s.dat -- python3 -m zlperf.workload --seconds 3   # kernels without the patch
  zlperf record --profile stock --backend perf -o s.perf.data --duration 5           # perf.data + s.perf.kallsyms
  zlperf record --recipe ./my.yaml --dry-run -- CMD        # print the commands and tracefs writes, run nothing
  zlperf record --profile page-churn -o big.dat -- python3 -m zlperf.workload --seconds 3   # ~1.5 M kmem events
  zlperf record --profile acme:ci-stock -o s.dat --junit check.xml -- ./load-test   # a pack's recipe, budgets checked

A recipe with `budgets:` is checked on the new recording right after it (as `zlperf check OUT --recipe R`):
the lines over budget and a summary are printed, and the exit status is the recording's when that is not 0
(the command failed, or the recording did), else the check's: 0 within budget, 1 over budget, 2 a budget
could not be evaluated. --no-check records only. A recipe's `requires:` are checked before anything else.

Where `trace-cmd record` is refused (it cannot write /proc/sys/kernel/ftrace_enabled), zlperf records
through a tracefs instance of its own and `trace-cmd extract`, and says so; it then writes to tracefs only
inside that instance. Ctrl-C or SIGTERM stop the recording and still leave a complete file. OUT and the
files beside it are checked before CMD runs and written under a temporary name, renamed when complete: a
failed recording leaves no partial file, and a symlink at any of them is refused. What a recording killed
with SIGKILL leaves (its instance, partial files), the next `zlperf record` removes, and says so.
--dry-run changes nothing: it reads tracefs, runs `trace-cmd --version` / `perf --version`, and writes
back the value /proc/sys/kernel/ftrace_enabled already has (the refusal probe, a no-op for the kernel).
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``record`` subcommand."""
    p = sub.add_parser(
        "record", help="record zone-lock events with a recipe",
        description="Record a recipe's events system-wide, while CMD runs or for --duration seconds.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--profile", metavar="NAME", help="recipe name on the search path (zlperf recipes list)")
    which.add_argument("--recipe", metavar="FILE", help="recipe file")
    p.add_argument("-o", "--output", metavar="OUT", help="output file (default: the recipe's, else trace.dat / perf.data)")
    p.add_argument("--duration", type=float, metavar="S",
                   help="seconds to record (with a command: stop it after S seconds)")
    p.add_argument("--backend", choices=["trace-cmd", "perf"], help="recorder (default: the recipe's, else trace-cmd)")
    p.add_argument("--dry-run", action="store_true", help="print the exact commands and tracefs writes; run nothing")
    p.add_argument("--no-check", action="store_true", help="do not check the recipe's budgets after recording")
    p.add_argument("--junit", metavar="OUT.xml", help="write the budget check as JUnit XML (zlperf check --junit)")
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS", help="command to run while recording")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the recipe, check the machine, record; the exit status of the recording."""
    from pathlib import Path

    from zlperf.recipes import load_recipe
    from zlperf.recipes.validate import MAX_DURATION
    from zlperf.record import RecordOptions, record
    from zlperf.record.tracefs import event_format_here

    command = list(args.command or [])
    if command and command[0] == "--":
        command = command[1:]
    if args.duration is not None and not (math.isfinite(args.duration) and 0 < args.duration <= MAX_DURATION):
        raise ZlperfError(f"--duration {args.duration:g}: give a number of seconds above 0 (at most {MAX_DURATION:g})")
    recipe = load_recipe(Path(args.recipe) if args.recipe else args.profile, lookup=event_format_here, warn=warn)
    opts = RecordOptions(recipe, output=args.output, duration=args.duration, backend=args.backend,
                         command=command, dry_run=args.dry_run)
    checking = bool(recipe.budgets) and not args.no_check
    if checking and args.junit:
        from zlperf.safeio import check_output

        check_output(args.junit, "JUnit report")  # before recording, not after the workload ran
    rc = record(opts)
    if not checking:
        return rc
    if args.dry_run:
        print(f"# then: zlperf check {shlex.quote(str(opts.output_path))} --recipe {shlex.quote(recipe.path)}"
              + (f" --junit {shlex.quote(args.junit)}" if args.junit else ""))
        return rc
    return _check_after(opts.output_path, args, recipe, rc)


def _check_after(out: "Path", args: argparse.Namespace, recipe: "Recipe", rc: int) -> int:
    """Check the recording just written against the recipe's budgets; the recording's status if not 0, else the check's."""
    from zlperf.commands.check import check_and_print

    if not out.exists():
        warn(f"budgets not checked: no recording at {out}")
        return rc or 2
    try:
        status = check_and_print(str(out), args, recipe, junit=args.junit)
    except ZlperfError as exc:
        print(f"zlperf: budgets not checked: {exc}", file=sys.stderr)
        status = 2
    return rc if rc != 0 else status
