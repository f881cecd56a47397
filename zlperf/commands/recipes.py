"""``zlperf recipes``: list the recipes on the search path, show one after extends, validate files."""

from __future__ import annotations

__all__ = ["register", "run"]

import argparse
import sys

from zlperf.errors import ZlperfError, warn

_EXAMPLES = """examples:
  zlperf recipes list                       # name, where it comes from, description
  zlperf recipes show hold-time             # the recipe after extends, as YAML
  zlperf recipes validate my.yaml other.yaml   # every problem as file:line:column: key: what

Search path, first wins: ./recipes, $ZLPERF_RECIPES (colon-separated), ~/.config/zlperf/recipes,
the built-ins. A recipe may extend one of the same name further down the path.
"""


def _keys_help() -> str:
    from zlperf.recipes import KEYS

    width = max(len(k) for k in KEYS)
    return "recipe keys:\n" + "\n".join(f"  {k:<{width}}  {v}" for k, v in KEYS.items()) + "\n"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``recipes`` subcommand."""
    p = sub.add_parser(
        "recipes", help="list, show and validate recording recipes",
        description="Recording recipes: YAML files naming events, filters, stacks, buffer, clock, duration.",
        epilog=_EXAMPLES + "\n" + _keys_help(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rsub = p.add_subparsers(dest="action", metavar="ACTION")
    rsub.required = True
    rsub.add_parser("list", help="recipes on the search path")
    show = rsub.add_parser("show", help="one recipe after extends, as YAML")
    show.add_argument("name", help="recipe name or path")
    val = rsub.add_parser("validate", help="check recipe files; exit status 1 if any has a problem")
    val.add_argument("files", nargs="+", metavar="FILE", help="recipe files (or names)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Dispatch list / show / validate."""
    from zlperf import recipes
    from zlperf.record.tracefs import event_format_here

    if args.action == "list":
        entries = recipes.list_recipes()
        if not entries:
            raise ZlperfError("no recipes found (not even the built-ins: is zlperf installed completely?)")
        width = max(len(e.name) for e in entries)
        owidth = max(len(e.origin) for e in entries)
        for e in entries:
            desc = e.description + (f"  [shadowed by {e.shadowed_by}]" if e.shadowed_by else "")
            print(f"{e.name:<{width}}  {e.origin:<{owidth}}  {desc}")
        return 0
    if args.action == "show":
        print(recipes.recipe_yaml(recipes.load_recipe(args.name, lookup=event_format_here, warn=warn)), end="")
        return 0
    bad = 0
    for f in args.files:
        errors, warnings = recipes.validate_file(f, lookup=event_format_here)
        for w in warnings:
            print(f"zlperf: warning: {w}", file=sys.stderr)
        for e in errors:
            print(f"zlperf: {e}", file=sys.stderr)
        if errors:
            bad += 1
        else:
            print(f"{f}: ok")
    return 1 if bad else 0
