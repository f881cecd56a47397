"""Recipes: YAML files that say what to record (events, filters, stacks, buffer, clock, duration, backend),
who owns them, what they require, and the budgets ``zlperf check`` holds a recording to.

Loading finds a recipe by name on the search path, in an installed pack (``PACK:NAME``) or at a path,
merges ``extends`` chains and validates everything, naming file:line:column and the key of each problem.
Recipes are data only. Modules: ``model`` (keys, :class:`Recipe`), ``search`` (search path), ``packs``
(entry-point packs), ``yamldoc`` (YAML with positions), ``validate`` (checks), ``metadata`` (version, owner,
requires, report defaults), ``budgets``, ``filters`` (tracefs filter grammar), ``known_events``, ``load``.
"""

from __future__ import annotations

__all__ = [
    "Recipe",
    "RecipeEntry",
    "KEYS",
    "BACKENDS",
    "FormatLookup",
    "search_path",
    "find_recipe",
    "list_recipes",
    "load_recipe",
    "validate_file",
    "check_filter",
    "FILTER_PSEUDO_FIELDS",
    "recipe_yaml",
    "KNOWN_EVENTS",
    "known_format",
    "Budget",
    "METRICS",
    "budget_list",
    "Pack",
    "ENTRY_POINT_GROUP",
    "installed_packs",
    "SYSTEM_DIR",
    "is_path_ref",
    "split_qualified",
]

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the names as type checkers see them; at run time __getattr__ imports them on first use
    from zlperf.recipes.budgets import METRICS, Budget, budget_list
    from zlperf.recipes.filters import FILTER_PSEUDO_FIELDS, check_filter
    from zlperf.recipes.known_events import KNOWN_EVENTS, known_format
    from zlperf.recipes.load import load_recipe, recipe_yaml, validate_file
    from zlperf.recipes.model import BACKENDS, KEYS, Recipe, RecipeEntry
    from zlperf.recipes.packs import ENTRY_POINT_GROUP, Pack, installed_packs
    from zlperf.recipes.search import SYSTEM_DIR, find_recipe, is_path_ref, list_recipes, search_path, split_qualified
    from zlperf.recipes.validate import FormatLookup

#: public name -> the submodule defining it. Imported on first use: ``zlperf -h`` and the subcommands that
#: only register their options must not pay for YAML, numpy and the filter grammar.
_HOME = {
    "METRICS": "budgets",
    "Budget": "budgets",
    "budget_list": "budgets",
    "FILTER_PSEUDO_FIELDS": "filters",
    "check_filter": "filters",
    "KNOWN_EVENTS": "known_events",
    "known_format": "known_events",
    "load_recipe": "load",
    "recipe_yaml": "load",
    "validate_file": "load",
    "BACKENDS": "model",
    "KEYS": "model",
    "Recipe": "model",
    "RecipeEntry": "model",
    "ENTRY_POINT_GROUP": "packs",
    "Pack": "packs",
    "installed_packs": "packs",
    "SYSTEM_DIR": "search",
    "find_recipe": "search",
    "is_path_ref": "search",
    "list_recipes": "search",
    "search_path": "search",
    "split_qualified": "search",
    "FormatLookup": "validate",
}


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'zlperf.recipes' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"zlperf.recipes.{home}"), name)
    globals()[name] = value
    return value
