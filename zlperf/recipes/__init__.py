"""Recipes: YAML files that say what to record (events, filters, stacks, buffer, clock, duration, backend),
who owns them, what they require, and the budgets ``zlperf check`` holds a recording to.

Loading finds a recipe by name on the search path, in an installed pack (``PACK:NAME``) or at a path,
merges ``extends`` chains and validates everything, naming file:line:column and the key of each problem.
Recipes are data only. Modules: ``model`` (keys, :class:`Recipe`), ``search`` (search path), ``packs``
(entry-point packs), ``yamldoc`` (YAML with positions), ``validate`` (checks), ``metadata`` (version, owner,
requires, report defaults), ``budgets``, ``filters`` (tracefs filter grammar), ``known_events``, ``load``.
"""

from __future__ import annotations

from zlperf.recipes.budgets import METRICS, Budget, budget_list
from zlperf.recipes.filters import FILTER_PSEUDO_FIELDS, check_filter
from zlperf.recipes.known_events import KNOWN_EVENTS, known_format
from zlperf.recipes.load import load_recipe, recipe_yaml, validate_file
from zlperf.recipes.model import BACKENDS, KEYS, Recipe, RecipeEntry
from zlperf.recipes.packs import ENTRY_POINT_GROUP, Pack, installed_packs
from zlperf.recipes.search import SYSTEM_DIR, find_recipe, is_path_ref, list_recipes, search_path, split_qualified
from zlperf.recipes.validate import FormatLookup

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
