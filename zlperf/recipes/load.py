"""Loading a recipe: find the file, read it with positions, merge its ``extends`` chain, validate.

The base of a chain is loaded first; each file then overrides the keys it sets (filters and backend
options merge per entry). Problems are collected, so ``validate_file`` can show them all.
"""

from __future__ import annotations

__all__ = ["load_recipe", "validate_file", "recipe_yaml"]

import os
from pathlib import Path
from typing import Any, Callable, List, Optional, Tuple, Union

import yaml

from zlperf.errors import RecipeError
from zlperf.recipes.budgets import merge_budgets
from zlperf.recipes.known_events import known_format
from zlperf.recipes.model import Mark, Recipe
from zlperf.recipes.search import (check_recipe_file, find_all, find_recipe, is_path_ref, read_recipe, realpath,
                                   recipe_stem, split_qualified)
from zlperf.recipes.validate import FormatLookup, check_recipe, check_types
from zlperf.recipes.yamldoc import Problems, YamlDoc


#: Longest ``extends`` chain (the built-ins are 3 deep): a longer one is a mistake, or a generated attack.
MAX_EXTENDS = 32


def _resolve_file(ref: Union[str, Path]) -> Tuple[Any, str]:
    if isinstance(ref, Path):
        check_recipe_file(ref)
        return ref, "path"
    return find_recipe(ref)


def _load_chain(src: Any, origin: str, errs: Problems) -> Optional[Recipe]:
    """Load ``src`` and everything it extends, merged; problems go to ``errs`` (None when it cannot merge).

    The chain is followed in a loop (child first), then merged base first.
    """
    files: List[Tuple[Any, str, YamlDoc, dict]] = []
    seen: List[str] = []  # real paths, child first
    extends_mark: Optional[Mark] = None
    while True:
        fname = str(src)
        real = realpath(src) or fname
        if real in seen:
            cycle = " -> ".join(_short(p) for p in [*seen[seen.index(real):], real])
            errs.error(extends_mark or (fname, 1, 1), "extends", f"cycle: {cycle}")
            return None
        if len(files) == MAX_EXTENDS:
            errs.error(extends_mark or (fname, 1, 1), "extends",
                       f"more than {MAX_EXTENDS} recipes in one extends chain; merge some of them")
            return None
        try:
            text = read_recipe(src)
        except UnicodeDecodeError:
            errs.error((fname, 1, 1), "", "not a text file (UTF-8)")
            return None
        except OSError as exc:
            raise RecipeError(f"{fname}: cannot read recipe ({exc.strerror})")
        doc = YamlDoc(fname, text, errs)
        if not doc.ok:
            return None
        values = check_types(doc, errs)
        files.append((src, origin, doc, values))
        seen.append(real)
        if "extends" not in values:
            break
        here = Path(fname).parent if origin != "built-in" or realpath(src) else None
        try:
            src, origin = find_recipe(values["extends"], base_dir=here, exclude=real)
        except RecipeError as exc:
            errs.error(doc.vmark("extends"), "extends", str(exc))
            return None
        extends_mark = doc.vmark("extends")
    recipe: Optional[Recipe] = None
    for src, origin, doc, values in reversed(files):
        recipe = _merge(recipe, src, origin, doc, values)
    return recipe


def _merge(base: Optional[Recipe], src: Any, origin: str, doc: YamlDoc, values: dict) -> Recipe:
    """``values`` of one file over ``base`` (what it extends)."""
    fname = str(src)
    recipe = Recipe(name=recipe_stem(src), path=fname, origin=origin)
    if base is not None:
        recipe.description = base.description
        recipe.events = list(base.events)
        recipe.filters = dict(base.filters)
        recipe.stacks = base.stacks
        recipe.buffer_size_kb = base.buffer_size_kb
        recipe.clock = base.clock
        recipe.duration = base.duration
        recipe.output = base.output
        recipe.backend = base.backend
        recipe.backend_options = {k: dict(v) for k, v in base.backend_options.items()}
        recipe.zone_lock_frames = list(base.zone_lock_frames)
        recipe.requires = list(base.requires)
        recipe.budgets = merge_budgets({}, base.budgets)
        recipe.report = dict(base.report)
        recipe.chain = list(base.chain)
        recipe.marks = dict(base.marks)
    recipe.chain.append(fname)
    for key, value in values.items():
        if key == "extends":
            continue
        if key == "filters":
            # Filters merge per event; null removes one inherited from the base.
            for ev, expr in value.items():
                if expr is None:
                    recipe.filters.pop(ev, None)
                else:
                    recipe.filters[ev] = expr
                    f, line, col = doc.vmark(f"filters.{ev}")
                    # Point at the filter's first character, so offsets into it land on the right column.
                    recipe.marks[f"filters.{ev}"] = (f, line, col + (f"filters.{ev}" in doc.quoted))
            continue
        if key == "backend_options":
            for backend, opts in value.items():
                recipe.backend_options.setdefault(backend, {}).update(opts)
                for opt in opts:
                    recipe.marks[f"backend_options.{backend}.{opt}"] = doc.vmark(f"backend_options.{backend}.{opt}")
            continue
        if key == "budgets":
            # Budgets merge per metric, per zone and per caller; null removes one inherited.
            recipe.budgets = merge_budgets(recipe.budgets, value)
            for path in _budget_paths(value):
                recipe.marks[path] = doc.vmark(path)
            continue
        if key == "requires":
            # What the base needs, the extension needs too.
            recipe.requires += [r for r in value if r not in recipe.requires]
            recipe.marks["requires"] = doc.vmark(key)
            continue
        if key == "report":
            recipe.report.update(value)
            for k in value:
                recipe.marks[f"report.{k}"] = doc.vmark(f"report.{k}")
            continue
        if key == "events":
            recipe.events = list(value)
            for i in range(len(value)):
                recipe.marks[f"events[{i}]"] = doc.vmark(f"events[{i}]")
            # Indexes of a shorter inherited list must not point into this file.
            for stale in [k for k in recipe.marks if k.startswith("events[") and int(k[7:-1]) >= len(value)]:
                del recipe.marks[stale]
        elif key == "duration":
            value = float(value)
        setattr(recipe, key, value)
        recipe.marks[key] = doc.vmark(key)
    recipe.marks[""] = (fname, 1, 1)  # whole-recipe problems are reported on the file being loaded
    return recipe


def _budget_paths(budgets: dict) -> List[str]:
    """The recipe key paths of a file's budgets (for their marks)."""
    out = [f"budgets.{m}" for m in budgets.get("total", {})]
    for scope in ("zones", "callers"):
        for sel, metrics in budgets.get(scope, {}).items():
            out += [f"budgets.{scope}.{sel}.{m}" for m in (metrics or {})]
    return out


def _short(path: str) -> str:
    """A path relative to the current directory when that is shorter (for messages)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if len(rel) < len(path) else path


def load_recipe(
    ref: Union[str, Path], lookup: Optional[FormatLookup] = None, warn: Optional[Callable[[str], None]] = None
) -> Recipe:
    """Find, load, merge and validate a recipe (a name on the search path, or a path).

    Raises :class:`~zlperf.errors.RecipeError` naming file:line:column and key of the first problem.
    ``lookup`` gives event formats for filter checks (default: zlperf's table of known events;
    ``zlperf record`` passes the running kernel's formats).
    """
    src, origin = _resolve_file(Path(ref) if isinstance(ref, Path) else ref)
    errs = Problems()
    recipe = _load_chain(src, origin, errs)
    if recipe is not None:
        check_recipe(recipe, errs, lookup or known_format)
    if errs.errors:
        more = len(errs.errors) - 1
        tail = f" (and {more} more: zlperf recipes validate {src})" if more else ""
        raise RecipeError(errs.errors[0] + tail)
    assert recipe is not None
    if warn is not None:
        for w in errs.warnings:
            warn(w)
        if isinstance(ref, str) and not is_path_ref(ref) and split_qualified(ref) is None:
            _warn_shadowing(ref, src, origin, warn)
    return recipe


def _warn_shadowing(ref: str, src: Any, origin: str, warn: Callable[[str], None]) -> None:
    """Say so when the recipe found for ``ref`` hides another of the same name further down the path."""
    hidden = [(p, o, q) for p, o, q in find_all(ref) if realpath(p) != realpath(src)]
    if not hidden:
        return
    p, o, qualifier = hidden[0]
    what = "the built-in recipe" if o == "built-in" else f"the recipe of {o}"
    other = f"{qualifier}:{ref}" if qualifier else str(p)
    warn(f"{src} ({origin}) shadows {what} {ref!r}: it comes first on the search path ({other} names that one)")


def validate_file(path: Union[str, Path], lookup: Optional[FormatLookup] = None) -> Tuple[List[str], List[str]]:
    """Every problem of the recipe at ``path`` (or named ``path``): (errors, warnings), each one line."""
    errs = Problems()
    try:
        src, origin = _resolve_file(Path(path) if is_path_ref(str(path)) or Path(path).exists() else str(path))
        recipe = _load_chain(src, origin, errs)
    except RecipeError as exc:
        return [str(exc)], []
    if recipe is not None:
        check_recipe(recipe, errs, lookup or known_format)
    return errs.errors, errs.warnings


def recipe_yaml(recipe: Recipe) -> str:
    """The merged recipe as YAML, headed by a comment naming the files it came from."""
    head = [f"# recipe {recipe.name} ({recipe.origin}: {recipe.path})"]
    if len(recipe.chain) > 1:
        head.append("# merged from: " + " -> ".join(recipe.chain))
    body = yaml.safe_dump(recipe.to_dict(), sort_keys=False, default_flow_style=False, width=110)
    return "\n".join(head) + "\n" + body
