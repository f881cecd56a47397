"""``zlperf record``: record a recipe with trace-cmd (or a tracefs instance where that is refused) or perf."""

from __future__ import annotations

__all__ = ["register", "run"]

import argparse
import math

from zlperf.errors import ZlperfError, warn

_EXAMPLES = """examples:
  zlperf record --profile hold-time -o t.dat -- CMD ARGS   # all three zone-lock events while CMD runs
  zlperf record --profile minimal --duration 10            # lowest overhead, whole system, 10 s
  zlperf record --profile stock -o s.dat -- python3 -m zlperf.workload --seconds 3   # kernels without the patch
  zlperf record --profile stock --backend perf -o s.perf.data --duration 5           # perf.data + s.perf.kallsyms
  zlperf record --recipe ./my.yaml --dry-run -- CMD        # print the commands and tracefs writes, run nothing
  zlperf record --profile page-churn -o big.dat -- python3 -m zlperf.workload --seconds 3   # ~1.5 M kmem events

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
    return record(opts)
