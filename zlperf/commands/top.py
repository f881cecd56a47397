"""``zlperf top``: zone->lock contention live, interval by interval, from a tracefs instance of its own."""

from __future__ import annotations

__all__ = ["register", "run", "live_recipe", "positive_seconds"]

import argparse
import sys
import time
from typing import TYPE_CHECKING, Optional

from zlperf.errors import ZlperfError

if TYPE_CHECKING:
    from zlperf.analysis import AnalysisOptions
    from zlperf.recipes import Recipe

_EXAMPLES = """examples:
  sudo zlperf top                              # every second, full screen; Ctrl-C to quit
  sudo zlperf top -i 5 -n 12 > top.log         # twelve 5-second blocks, then exit (plain text when not a terminal)
  sudo zlperf top --profile stock --by zone,caller,task   # kernels without the zone-lock patch
  sudo zlperf top --profile hold-time --by zone,holder    # patched kernels: who held zone->lock meanwhile

Each interval shows, per zone and for the top callers: contended events/s, acquisitions/s, contention %,
waits and their p50/p99/max, hold p99 (patched kernels), and the events lost in the ring buffer. It traces in
its own tracefs instance (zlperf-top-PID) and removes it on exit, Ctrl-C, SIGTERM or an error.
"""


def positive_seconds(text: str) -> float:
    """argparse type: seconds above 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds above 0")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give 1 or more")
    return v


def add_recipe_options(p: argparse.ArgumentParser) -> None:
    """--profile / --recipe, as zlperf record has them (default: the richest this kernel allows)."""
    which = p.add_mutually_exclusive_group()
    which.add_argument("--profile", metavar="NAME",
                       help="recipe name (default: hold-time on kernels with the zone-lock patch, else stock)")
    which.add_argument("--recipe", metavar="FILE", help="recipe file")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``top`` subcommand."""
    p = sub.add_parser(
        "top", help="watch zone->lock contention live, interval by interval",
        description="Trace zone->lock contention live and show each interval: zones, callers, waits, holds.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_recipe_options(p)
    p.add_argument("-i", "--interval", type=positive_seconds, default=1.0, metavar="SECS",
                   help="seconds per interval (default 1)")
    p.add_argument("-n", "--count", type=_positive_int, metavar="COUNT", help="stop after COUNT intervals")
    p.add_argument("--by", help="tables: zone,caller,cpu,task,holder (default zone,caller, and holder when the recipe "
                                "records who held the lock)")
    p.add_argument("--top", type=_positive_int, default=5, metavar="N", help="rows of the caller/task/holder tables")
    p.add_argument("--plain", action="store_true", help="interval blocks one after another even on a terminal")
    p.set_defaults(func=run)


def live_recipe(args: argparse.Namespace) -> "Recipe":
    """The recipe of ``--recipe`` / ``--profile``, else the default profile for this kernel."""
    from pathlib import Path

    from zlperf.errors import warn
    from zlperf.live.source import default_profile, live_tracefs
    from zlperf.recipes import load_recipe
    from zlperf.record.tracefs import event_format_here

    ref = Path(args.recipe) if args.recipe else (args.profile or default_profile(live_tracefs()))
    return load_recipe(ref, lookup=event_format_here, warn=warn)


def live_options(recipe: "Recipe", top: int) -> "AnalysisOptions":
    """Analysis options from the recipe (its stock frame table) and the rows wanted."""
    from zlperf.analysis import AnalysisOptions

    options = AnalysisOptions(top=top)
    if recipe.zone_lock_frames:
        options.zone_lock_frames = {fn: f"from recipe {recipe.path}" for fn in recipe.zone_lock_frames}
    return options


def _tables(text: str) -> tuple[str, ...]:
    from zlperf.live.screen import TABLES

    tables = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in tables if t not in TABLES]
    if bad or not tables:
        raise ZlperfError(f"--by {text!r}: choose from {', '.join(TABLES)} (comma-separated)")
    return tables


def _say(msg: str) -> None:
    print(f"zlperf: {msg}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Trace until -n intervals were shown or a stop signal arrives; 0."""
    from zlperf.live.screen import FullScreen, render_tick
    from zlperf.live.session import LiveSession

    tables = _tables(args.by) if args.by is not None else None
    recipe = live_recipe(args)
    out = sys.stdout
    full = out.isatty() and not args.plain
    last: Optional[str] = None
    cannot = ""  # what the ABI cannot show, said once
    with LiveSession(recipe, live_options(recipe, args.top), prefix="zlperf-top", say=_say) as session:
        assert session.source is not None
        _say(f"tracing {recipe.name} ({', '.join(recipe.events)}{' + stacks' if recipe.stacks else ''}) live in "
             f"{session.source.instance.path}; Ctrl-C to stop")
        screen = FullScreen(out) if full else None
        due = time.monotonic() + args.interval
        shown = 0
        try:
            if screen is not None:
                screen.__enter__()
                screen.draw(f"zlperf top: first interval in {args.interval:g}s ...")
            while args.count is None or shown < args.count:
                if not session.wait(due):
                    break
                tick = session.take()
                shown_tables = tables or (("zone", "caller", "holder") if tick.interval.result.holders is not None
                                          else ("zone", "caller"))
                last = render_tick(tick, shown_tables, args.top)
                caps = tick.interval.result.capabilities
                if not cannot and tick.interval.events and caps.cannot:
                    cannot = "these events cannot show (\"-\" in the tables): " + "; ".join(caps.cannot)
                    if screen is None:
                        _say(cannot)
                # Like sleep(interval) loops (bcc's tools): a late interval is not made up by a short next one.
                due = time.monotonic() + args.interval
                shown += 1
                if screen is not None:
                    screen.draw(last + ("\n" + cannot if cannot else ""),
                                footer=f"zlperf top: {recipe.name}, every {args.interval:g}s; Ctrl-C to quit")
                else:
                    out.write(last + "\n")
                    out.flush()
        finally:
            if screen is not None:
                screen.__exit__()
    if screen is not None and last is not None:
        out.write(last)  # the last screen stays on the terminal after the alternate screen is gone
    return 0
