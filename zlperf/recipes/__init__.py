"""Recipes: YAML files that say what to record (events, filters, stacks, buffer, clock, duration, backend).

Loading finds a recipe by name on the search path (or takes a path), merges ``extends`` chains and
validates everything, naming file:line:column and the key of each problem. Recipes are data only.
Modules: ``model`` (keys, :class:`Recipe`), ``search`` (search path), ``yamldoc`` (YAML with positions),
``validate`` (checks), ``filters`` (tracefs filter grammar), ``known_events`` (event table), ``load``.
"""

from __future__ import annotations

from zlperf.recipes.filters import FILTER_PSEUDO_FIELDS, check_filter
from zlperf.recipes.known_events import KNOWN_EVENTS, known_format
from zlperf.recipes.load import load_recipe, recipe_yaml, validate_file
from zlperf.recipes.model import BACKENDS, KEYS, Recipe, RecipeEntry
from zlperf.recipes.search import find_recipe, list_recipes, search_path
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
]
