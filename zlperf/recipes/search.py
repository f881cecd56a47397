"""Where recipes are found: ./recipes, $ZLPERF_RECIPES, ~/.config/zlperf/recipes, /etc/zlperf/recipes, packs, built-ins.

A name is looked up folder by folder (first wins); ``PACK:NAME`` (or ``builtin:NAME``) names one pack's recipe;
a reference with a '/' or a .yaml suffix is a path.
"""

from __future__ import annotations

__all__ = ["MAX_RECIPE_BYTES", "SYSTEM_DIR", "search_path", "find_recipe", "find_all", "list_recipes",
           "builtin_recipe", "read_recipe", "recipe_stem", "realpath", "is_path_ref", "split_qualified"]

import difflib
import os
from pathlib import Path
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import yaml

from zlperf.errors import RecipeError, ZlperfError
from zlperf.recipes.model import RecipeEntry
from zlperf.recipes.packs import RESERVED_PACK_NAMES, installed_packs
from zlperf.recipes.yamldoc import one_line
from zlperf.safeio import check_input, read_limited

#: A recipe is a few hundred bytes; anything past this is not one (and is not read further).
MAX_RECIPE_BYTES = 1 << 20

#: The system-wide folder (what the machine's administrator installs for every user).
SYSTEM_DIR = Path("/etc/zlperf/recipes")

_QUALIFIED_RE = re.compile(r"^(?P<pack>[A-Za-z0-9][A-Za-z0-9_.-]{0,63}):(?P<name>[^:/]+)$")


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


@dataclass(frozen=True)
class _Source:
    """One folder of the search path: how it is named, where it is, and its qualifier (packs, built-ins)."""

    origin: str
    folder: Any
    qualifier: Optional[str] = None


def _sources() -> List[_Source]:
    """The search path, first wins: ./recipes, $ZLPERF_RECIPES, ~/.config, /etc, the packs (by name), built-ins."""
    builtin = _builtin_dir()
    entries: List[_Source] = [_Source("./recipes", Path.cwd() / "recipes")]
    for part in os.environ.get("ZLPERF_RECIPES", "").split(":"):
        if part:
            entries.append(_Source("$ZLPERF_RECIPES", Path(part).expanduser()))
    entries.append(_Source("~/.config/zlperf/recipes", Path.home() / ".config" / "zlperf" / "recipes"))
    entries.append(_Source(str(SYSTEM_DIR), SYSTEM_DIR))
    entries.extend(_Source(p.origin, p.folder, p.name) for p in installed_packs() if p.problem is None)
    out: List[_Source] = []
    builtin_real = realpath(builtin)
    for src in entries:
        # In a source checkout ./recipes IS the built-in folder: list it once, as built-in.
        if builtin_real is not None and realpath(src.folder) == builtin_real:
            continue
        out.append(src)
    out.append(_Source("built-in", builtin, RESERVED_PACK_NAMES[0]))
    return out


def search_path() -> List[Tuple[str, Any]]:
    """(origin, folder) searched for recipe names, first wins: ./recipes, $ZLPERF_RECIPES, ~/.config, /etc,
    installed packs, built-ins."""
    return [(s.origin, s.folder) for s in _sources()]


def split_qualified(ref: str) -> Optional[Tuple[str, str]]:
    """(pack, name) of ``PACK:NAME`` (``builtin:NAME`` for zlperf's own), or None for a plain name or a path."""
    if is_path_ref(ref):
        return None
    m = _QUALIFIED_RE.match(ref)
    return (m.group("pack"), m.group("name")) if m else None


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
    """Locate a recipe: a path (relative to ``base_dir`` or cwd), ``PACK:NAME``, or a name on the search path.

    Returns (file, origin). ``exclude`` skips one file so a recipe may extend one of the same name further
    down the path (./recipes/stock.yaml extending the built-in stock).
    """
    if is_path_ref(ref):
        p = Path(ref).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        check_recipe_file(p)
        return p, "path"
    sources = _sources()
    qualified = split_qualified(ref)
    if qualified is not None:
        pack, ref = qualified
        sources = [s for s in sources if s.qualifier == pack]
        if not sources:
            packs = sorted(s.qualifier for s in _sources() if s.qualifier and s.qualifier not in RESERVED_PACK_NAMES)
            raise RecipeError(f"no recipe pack named {one_line(pack)!r} is installed (installed packs: "
                              f"{', '.join(packs) or 'none'}; builtin:NAME names zlperf's own; "
                              "pip install the pack, or see `zlperf recipes list`)")
    names = []
    for src in sources:
        for p in _recipe_files(src.folder):
            names.append(recipe_stem(p))
            if recipe_stem(p) == ref and (exclude is None or realpath(p) != exclude):
                return p, src.origin
    where = ", ".join(s.origin for s in sources)
    close = difflib.get_close_matches(ref, sorted(set(names)), n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else "; `zlperf recipes list` shows them"
    shown = one_line(ref)[:100]
    if qualified is not None:
        raise RecipeError(f"no recipe named {shown!r} in {where}{hint}")
    raise RecipeError(f"no recipe named {shown!r} on the search path ({where}){hint}")


def find_all(name: str) -> List[Tuple[Any, str, Optional[str]]]:
    """Every file called ``name`` on the search path, as (file, origin, qualifier): the first shadows the others."""
    return [(p, s.origin, s.qualifier) for s in _sources() for p in _recipe_files(s.folder) if recipe_stem(p) == name]


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
    seen: Dict[str, int] = {}
    out: List[RecipeEntry] = []
    for src in _sources():
        for p in _recipe_files(src.folder):
            name = recipe_stem(p)
            try:
                meta = _quick_meta(p)
            except Exception:  # a broken recipe still gets listed; validate says what is wrong
                meta = {"description": "(does not load: run `zlperf recipes validate`)"}
            first = seen.get(name)
            out.append(RecipeEntry(
                name, src.origin, str(p), meta.get("description", ""),
                shadowed_by=None if first is None else out[first].path,
                version=meta.get("version"), owner=meta.get("owner"),
                qualified=f"{src.qualifier}:{name}" if src.qualifier else None,
            ))
            if first is None:
                seen[name] = len(out) - 1
    # The first of each name shadows the later ones: say which, on its own line too.
    for i, e in enumerate(out):
        hidden = tuple(x.origin for x in out if x.shadowed_by == e.path and x is not e)
        if hidden and e.shadowed_by is None:
            out[i] = RecipeEntry(e.name, e.origin, e.path, e.description, None, e.version, e.owner, e.qualified,
                                 hidden)
    return out


def _text(value: Any, limit: int) -> Optional[str]:
    """A metadata value for one line of a listing (escaped, cut), or None when it is not text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        return None
    value = one_line(value.strip())
    return value if len(value) <= limit else value[: limit - 3] + "..."


def _quick_meta(p: Any) -> Dict[str, str]:
    """description, version and owner of a recipe file as written (no extends, no validation)."""
    data = yaml.safe_load(read_recipe(p))
    if not isinstance(data, dict):
        return {}
    out: Dict[str, str] = {}
    for key, limit in (("description", 120), ("version", 24), ("owner", 40)):
        value = _text(data.get(key), limit)
        if value is not None:
            out[key] = value
    if "description" not in out and _text(data.get("extends"), 80):
        out["description"] = f"(extends {_text(data.get('extends'), 80)})"
    return out
