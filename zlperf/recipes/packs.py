"""Recipe packs: Python distributions that declare a folder of recipes under the ``zlperf.recipes`` entry points.

A pack's entry point is ``NAME = "some_package.recipes"``: NAME qualifies its recipes (``NAME:recipe``) and the
value names the package folder holding the .yaml files. Finding it imports nothing: listing runs no pack code.
"""

from __future__ import annotations

__all__ = ["ENTRY_POINT_GROUP", "RESERVED_PACK_NAMES", "Pack", "installed_packs", "pack_named"]

import importlib.metadata
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

from zlperf.recipes.yamldoc import one_line

#: The entry-point group a pack declares its recipe folder under (pyproject.toml:
#: ``[project.entry-points."zlperf.recipes"] acme = "acme_zlperf_recipes.recipes"``).
ENTRY_POINT_GROUP = "zlperf.recipes"

#: Qualifiers a pack may not take: ``builtin:NAME`` always means zlperf's own recipes.
RESERVED_PACK_NAMES = ("builtin",)

#: Most packs considered (an environment with more is broken or hostile; the rest are left out with a problem).
MAX_PACKS = 256

_PACK_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Pack:
    """One installed recipe pack: its qualifier, the distribution that declares it and its recipe folder."""

    name: str  #: the entry point's name: recipes are ``name:recipe``
    dist: str  #: the distribution (``pip install`` name)
    version: str  #: the distribution's version
    module: str  #: the entry point's value: the package folder holding the recipes
    folder: Optional[Path]  #: None when the folder cannot be used (``problem`` says why)
    problem: Optional[str] = None  #: one line: why this pack contributes no recipes

    @property
    def origin(self) -> str:
        """How ``zlperf recipes list`` names where a recipe of this pack comes from."""
        return f"pack {self.name} ({self.dist} {self.version})"


def _entry_points() -> Iterable[Any]:
    eps = importlib.metadata.entry_points()
    if hasattr(eps, "select"):  # Python >= 3.10
        return eps.select(group=ENTRY_POINT_GROUP)
    return eps.get(ENTRY_POINT_GROUP, [])  # type: ignore[attr-defined]  # Python 3.9: a dict of lists


def _dist_of(ep: Any) -> tuple[str, str]:
    """(name, version) of the distribution declaring ``ep`` (``ep.dist`` exists since Python 3.10)."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "(unknown distribution)", "?"
    meta = dist.metadata
    return one_line(str(meta["Name"] or "?"))[:100], one_line(str(dist.version or "?"))[:40]


def package_folder(module: str) -> Optional[Path]:
    """The folder of package ``module`` (dotted) without importing it, or None when there is none.

    The top-level package is located by the import system's finders (``find_spec`` of a top-level name
    runs no code of it); the rest of the dotted name is followed as sub-folders of its search locations.
    """
    top, *rest = module.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location, *rest)
        if folder.is_dir():
            return folder
    return None


def installed_packs() -> List[Pack]:
    """Every pack declared in this Python environment, sorted by name (duplicates and bad ones carry a problem)."""
    found: List[Pack] = []
    for ep in _entry_points():
        dist, version = _dist_of(ep)
        name, value = one_line(str(ep.name)), one_line(str(ep.value)).strip()
        if len(found) >= MAX_PACKS:
            break
        if not _PACK_NAME_RE.match(name):
            problem = f"entry point name {name[:80]!r} is not a pack name (letters, digits, '_', '.', '-')"
        elif name in RESERVED_PACK_NAMES:
            problem = f"the name {name!r} is reserved for zlperf's built-in recipes ({name}:NAME)"
        elif not _MODULE_RE.match(value):
            problem = (f"entry point value {value[:80]!r} must name the package folder of the recipes "
                       "(e.g. acme_zlperf_recipes.recipes; no ':attribute', nothing is imported)")
        else:
            problem = None
        folder = None if problem else package_folder(value)
        if problem is None and folder is None:
            problem = f"package {value} is not installed as a folder (is the pack installed completely?)"
        found.append(Pack(name, dist, version, value, folder, problem))
    found.sort(key=lambda p: (p.name, p.dist, p.version))
    out: List[Pack] = []
    first: Dict[str, Pack] = {}
    for p in found:
        if p.problem is None and p.name in first:
            other = first[p.name]
            p = Pack(p.name, p.dist, p.version, p.module, None,
                     f"another pack is also named {p.name!r} ({other.dist} {other.version}), which is used")
        elif p.problem is None:
            first[p.name] = p
        out.append(p)
    return out


def pack_named(name: str, packs: Optional[List[Pack]] = None) -> Optional[Pack]:
    """The usable pack called ``name`` (the first by distribution name when two claim it), or None."""
    for p in packs if packs is not None else installed_packs():
        if p.name == name and p.problem is None:
            return p
    return None

