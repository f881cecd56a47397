"""``zlperf recipes``: list the recipes on the search path and the installed packs, show one, validate files."""

from __future__ import annotations

__all__ = ["register", "run"]

import argparse
import json
import sys
from typing import List

from zlperf.errors import ZlperfError, warn

_EXAMPLES = """examples:
  zlperf recipes list                       # name, version, owner, origin, and which one shadows which
  zlperf recipes list --json                # the same with paths and descriptions, for scripts
  zlperf recipes show acme:ci-stock         # a pack's recipe as written (PACK:NAME; builtin:NAME for zlperf's)
  zlperf recipes show hold-time --resolved  # the recipe after extends, as YAML
  zlperf recipes validate my.yaml other.yaml   # every problem as file:line:column: key: what

Search path, first wins: ./recipes, $ZLPERF_RECIPES (colon-separated), ~/.config/zlperf/recipes,
/etc/zlperf/recipes, installed recipe packs (Python distributions with a `zlperf.recipes` entry point,
by pack name), the built-ins. A recipe may extend one of the same name further down the path, or any
pack's recipe by its qualified name PACK:NAME (builtin:NAME for zlperf's own).
"""


def _keys_help() -> str:
    from zlperf.recipes import KEYS

    width = max(len(k) for k in KEYS)
    return "recipe keys:\n" + "\n".join(f"  {k:<{width}}  {v}" for k, v in KEYS.items()) + "\n"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``recipes`` subcommand."""
    p = sub.add_parser(
        "recipes", help="list, show and validate recording recipes",
        description="Recording recipes: YAML files naming events, filters, stacks, buffer, clock, duration, budgets.",
        epilog=_EXAMPLES + "\n" + _keys_help(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rsub = p.add_subparsers(dest="action", metavar="ACTION")
    rsub.required = True
    lst = rsub.add_parser("list", help="recipes on the search path and in installed packs")
    lst.add_argument("--json", action="store_true", help="one JSON list: name, qualified, version, owner, origin, "
                                                         "path, description, shadowed_by, shadows")
    show = rsub.add_parser("show", help="one recipe as written (--resolved: after extends)")
    show.add_argument("name", help="recipe name, PACK:NAME or path")
    show.add_argument("--resolved", action="store_true", help="merge its extends chain and print the result")
    val = rsub.add_parser("validate", help="check recipe files; exit status 1 if any has a problem")
    val.add_argument("files", nargs="+", metavar="FILE", help="recipe files (or names)")
    p.set_defaults(func=run)


def _list(as_json: bool) -> int:
    from zlperf import recipes
    from zlperf.recipes.packs import installed_packs

    for pack in installed_packs():
        if pack.problem:
            warn(f"recipe pack {pack.name} ({pack.dist} {pack.version}) is left out: {pack.problem}")
    entries = recipes.list_recipes()
    if not entries:
        raise ZlperfError("no recipes found (not even the built-ins: is zlperf installed completely?)")
    if as_json:
        json.dump([{**e.__dict__, "shadows": list(e.shadows)} for e in entries], sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    origin_of = {e.path: e.origin for e in entries}
    rows: List[List[str]] = [["NAME", "VERSION", "OWNER", "ORIGIN", "DESCRIPTION"]]
    for e in entries:
        note = ""
        if e.shadowed_by:
            note = f"  [shadowed by {origin_of.get(e.shadowed_by, '?')}: {e.shadowed_by}]"
        elif e.shadows:
            note = f"  [shadows {', '.join(e.shadows)}]"
        rows.append([e.name, e.version or "-", e.owner or "-", e.origin, e.description + note])
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(f"{c:<{w}}" for c, w in zip(r, widths)) + "  " + r[4])
    return 0


def _show(name: str, resolved: bool) -> int:
    from zlperf import recipes
    from zlperf.record.tracefs import event_format_here

    from pathlib import Path

    from zlperf.recipes.search import read_recipe

    recipe = recipes.load_recipe(name, lookup=event_format_here, warn=warn)  # validated either way
    if resolved or not Path(recipe.path).is_file():  # a built-in inside a zip: only the merged form
        print(recipes.recipe_yaml(recipe), end="")
        return 0
    text = read_recipe(Path(recipe.path))
    version = f" {recipe.version}" if recipe.version else ""
    print(f"# recipe {recipe.name}{version} ({recipe.origin}: {recipe.path})")
    if len(recipe.chain) > 1:
        print("# extends: " + " -> ".join(reversed(recipe.chain[:-1])) + "  (--resolved shows the merged recipe)")
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def run(args: argparse.Namespace) -> int:
    """Dispatch list / show / validate."""
    from zlperf import recipes
    from zlperf.record.tracefs import event_format_here

    if args.action == "list":
        return _list(args.json)
    if args.action == "show":
        return _show(args.name, args.resolved)
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
