"""Where recipes are found: ./recipes, $ZLPERF_RECIPES, ~/.config/zlperf/recipes, then the built-ins.

A name is looked up folder by folder (first wins); a reference with a '/' or a .yaml suffix is a path.
"""

from __future__ import annotations

__all__ = ["MAX_RECIPE_BYTES", "search_path", "find_recipe", "list_recipes", "builtin_recipe", "read_recipe",
           "recipe_stem", "realpath", "is_path_ref"]

import difflib
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

from zlperf.errors import RecipeError, ZlperfError
from zlperf.recipes.model import RecipeEntry
from zlperf.safeio import check_input, read_limited

#: A recipe is a few hundred bytes; anything past this is not one (and is not read further).
MAX_RECIPE_BYTES = 1 << 20


def _builtin_dir() -> Any:
    """The built-in recipes folder that belongs to the zlperf package actually imported.

    A wheel puts it at zlperf/builtin_recipes; a source checkout (editable or on PYTHONPATH) has it at
    recipes/ beside zlperf/. Looking there first keeps the two together even when an editable install
    of another checkout is also on the path.
    """
    package = Path(__file__).resolve().parents[1]  # .../zlperf
    for folder in (package / "builtin_recipes", package.parent / "recipes"):
        if (folder / "__init__.py").is_file() and any(folder.glob("*.yaml")):
            return folder
    from importlib.resources import files

    try:
        return files("zlperf.builtin_recipes")
    except ModuleNotFoundError:
        raise RecipeError("zlperf's built-in recipes are missing (reinstall zlperf)")


def search_path() -> List[Tuple[str, Any]]:
    """Folders searched for recipe names, first wins: ./recipes, $ZLPERF_RECIPES, ~/.config, built-ins."""
    builtin = _builtin_dir()
    entries: List[Tuple[str, Any]] = [("./recipes", Path.cwd() / "recipes")]
    for part in os.environ.get("ZLPERF_RECIPES", "").split(":"):
        if part:
            entries.append(("$ZLPERF_RECIPES", Path(part).expanduser()))
    entries.append(("~/.config/zlperf/recipes", Path.home() / ".config" / "zlperf" / "recipes"))
    out: List[Tuple[str, Any]] = []
    builtin_real = realpath(builtin)
    for origin, folder in entries:
        # In a source checkout ./recipes IS the built-in folder: list it once, as built-in.
        if builtin_real is not None and realpath(folder) == builtin_real:
            continue
        out.append((origin, folder))
    out.append(("built-in", builtin))
    return out


def realpath(p: Any) -> Optional[str]:
    """``os.path.realpath`` of a file or folder; None for a resource inside a zip."""
    try:
        return os.path.realpath(os.fspath(p))
    except TypeError:
        return None  # a resource inside a zip: never the same as a folder on disk


def _recipe_files(folder: Any) -> List[Any]:
    try:
        items = list(folder.iterdir())
    except (OSError, AttributeError):
        return []
    return sorted((p for p in items if p.name.endswith((".yaml", ".yml")) and p.is_file()), key=lambda p: p.name)


def recipe_stem(p: Any) -> str:
    """The recipe name of a file: its name without .yaml / .yml."""
    return p.name.rsplit(".", 1)[0]


def is_path_ref(ref: str) -> bool:
    """True when ``ref`` names a file rather than a recipe on the search path."""
    return "/" in ref or ref.endswith((".yaml", ".yml"))


def find_recipe(ref: str, base_dir: Optional[Path] = None, exclude: Optional[str] = None) -> Tuple[Any, str]:
    """Locate a recipe: a path (relative to ``base_dir`` or cwd) or a name on the search path.

    Returns (file, origin). ``exclude`` skips one file so a recipe may extend one of the same name further
    down the path (./recipes/stock.yaml extending the built-in stock).
    """
    if is_path_ref(ref):
        p = Path(ref).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        check_recipe_file(p)
        return p, "path"
    names = []
    for origin, folder in search_path():
        for p in _recipe_files(folder):
            names.append(recipe_stem(p))
            if recipe_stem(p) == ref and (exclude is None or realpath(p) != exclude):
                return p, origin
    where = ", ".join(o for o, _ in search_path())
    close = difflib.get_close_matches(ref, sorted(set(names)), n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else "; `zlperf recipes list` shows them"
    raise RecipeError(f"no recipe named {ref!r} on the search path ({where}){hint}")


def check_recipe_file(p: Path) -> None:
    """RecipeError (one line) unless ``p`` is a readable regular file: a FIFO would block, /dev/zero never ends."""
    if not p.exists() and not p.is_symlink():
        raise RecipeError(f"{p}: no such recipe file")
    try:
        check_input(p, "recipe")
    except ZlperfError as exc:
        raise RecipeError(str(exc)) from None


def read_recipe(src: Any) -> str:
    """The text of a recipe file (at most MAX_RECIPE_BYTES); RecipeError when it cannot be a recipe.

    Bytes that are not UTF-8 raise UnicodeDecodeError, for the caller to report at line 1.
    """
    if not isinstance(src, Path):
        return src.read_text()  # a built-in resource inside an installed package (a zip, say)
    try:
        return read_limited(src, MAX_RECIPE_BYTES, "recipe").decode("utf-8")
    except UnicodeDecodeError:
        raise
    except ZlperfError as exc:
        raise RecipeError(str(exc)) from None


def builtin_recipe(name: str) -> Optional[Any]:
    """The built-in recipe file called ``name``, or None."""
    return next((p for p in _recipe_files(_builtin_dir()) if recipe_stem(p) == name), None)


def list_recipes() -> List[RecipeEntry]:
    """Every recipe on the search path, in search order; later ones of a name already seen are shadowed."""
    seen: Dict[str, str] = {}
    out: List[RecipeEntry] = []
    for origin, folder in search_path():
        for p in _recipe_files(folder):
            name = recipe_stem(p)
            try:
                desc = _quick_description(p)
            except Exception:  # a broken recipe still gets listed; validate says what is wrong
                desc = "(does not load: run `zlperf recipes validate`)"
            out.append(RecipeEntry(name, origin, str(p), desc, seen.get(name)))
            seen.setdefault(name, str(p))
    return out


def _quick_description(p: Any) -> str:
    data = yaml.safe_load(read_recipe(p))
    if isinstance(data, dict) and isinstance(data.get("description"), str):
        return data["description"]
    if isinstance(data, dict) and isinstance(data.get("extends"), str):
        return f"(extends {data['extends']})"
    return ""
