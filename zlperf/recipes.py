"""Recipes: YAML files that say what to record (events, filters, stacks, buffer, clock, duration, backend).

Loading finds a recipe by name on the search path (or takes a path), merges ``extends`` chains and
validates everything, naming file:line:column and the key of each problem. Recipes are data only.
"""

from __future__ import annotations

__all__ = [
    "Recipe",
    "RecipeEntry",
    "KEYS",
    "BACKENDS",
    "search_path",
    "find_recipe",
    "list_recipes",
    "load_recipe",
    "validate_file",
    "check_filter",
    "recipe_yaml",
]

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import yaml

from zlperf.errors import RecipeError
from zlperf.formats import EventFormat
from zlperf.known_events import known_format

#: Backends ``zlperf record`` drives.
BACKENDS = ("trace-cmd", "perf")

#: Every key a recipe may have, with a one-line meaning (``zlperf recipes show`` and errors use it).
KEYS: Dict[str, str] = {
    "description": "one line shown by `zlperf recipes list`",
    "extends": "name or path of a recipe this one overrides parts of",
    "events": "list of SYS:EVENT tracepoints",
    "filters": "mapping SYS:EVENT -> tracefs filter expression (null removes an inherited one)",
    "stacks": "true to record a kernel stack with every event",
    "buffer_size_kb": "ring buffer per CPU, KiB",
    "clock": "trace clock (local, global, mono, boot, ...)",
    "duration": "seconds to record when no command is given",
    "output": "default output file name (a bare name, written in the current directory)",
    "backend": "trace-cmd or perf",
    "backend_options": "per-backend options: trace-cmd: {file_version, compression}; perf: {mmap_pages, kernel_callchains_only}",
    "zone_lock_frames": "stock kernels: functions whose waits are zone->lock waits (replaces the built-in table; "
                        "used by `zlperf report --recipe/--profile`)",
}

# Options each backend accepts from a recipe: a fixed list, never free-form arguments, so that a
# recipe cannot make a backend run or write anything else.
_BACKEND_OPTIONS: Dict[str, Dict[str, str]] = {
    "trace-cmd": {"file_version": "6 or 7 (trace-cmd record only)", "compression": "any, none or an algorithm (zstd, zlib)"},
    "perf": {"mmap_pages": "per-CPU mmap pages, a power of two", "kernel_callchains_only": "true: no user call chains"},
}

_EVENT_RE = re.compile(r"^[A-Za-z0-9_]+:[A-Za-z0-9_]+$")
_CLOCK_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_COMPRESSION_RE = re.compile(r"^[a-z0-9]+$")

#: Where a recipe came from: a file on disk, or a built-in resource.
Mark = Tuple[str, int, int]  # (file, line, column), 1-based


@dataclass
class Recipe:
    """A recipe after ``extends`` is merged: what ``zlperf record`` needs, plus where each key came from."""

    name: str
    path: str  #: the file the recipe itself is in
    origin: str  #: which search-path entry found it ("built-in", "./recipes", "path", ...)
    description: str = ""
    events: List[str] = field(default_factory=list)
    filters: Dict[str, str] = field(default_factory=dict)
    stacks: bool = False
    buffer_size_kb: Optional[int] = None
    clock: Optional[str] = None
    duration: Optional[float] = None
    output: Optional[str] = None
    backend: Optional[str] = None
    backend_options: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    zone_lock_frames: List[str] = field(default_factory=list)
    chain: List[str] = field(default_factory=list)  #: files merged, base first, this one last
    marks: Dict[str, Mark] = field(default_factory=dict)  #: key path -> where its value was set

    def to_dict(self) -> Dict[str, Any]:
        """The merged recipe as plain data, in KEYS order, without unset keys."""
        out: Dict[str, Any] = {}
        for key in KEYS:
            if key == "extends":
                continue
            value = getattr(self, key)
            if value in (None, {}, []) or (key == "description" and not value):
                continue
            out[key] = value
        return out


@dataclass(frozen=True)
class RecipeEntry:
    """One recipe file on the search path, as ``zlperf recipes list`` shows it."""

    name: str
    origin: str
    path: str
    description: str
    shadowed_by: Optional[str] = None  #: path of the recipe of the same name found earlier


# ----------------------------------------------------------------------------------------------
# Search path


def _builtin_dir() -> Any:
    """The built-in recipes folder that belongs to the zlperf package actually imported.

    A wheel puts it at zlperf/builtin_recipes; a source checkout (editable or on PYTHONPATH) has it at
    recipes/ beside zlperf/. Looking there first keeps the two together even when an editable install
    of another checkout is also on the path.
    """
    here = Path(__file__).resolve().parent
    for folder in (here / "builtin_recipes", here.parent / "recipes"):
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
    builtin_real = _realpath(builtin)
    for origin, folder in entries:
        # In a source checkout ./recipes IS the built-in folder: list it once, as built-in.
        if builtin_real is not None and _realpath(folder) == builtin_real:
            continue
        out.append((origin, folder))
    out.append(("built-in", builtin))
    return out


def _realpath(p: Any) -> Optional[str]:
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


def _stem(p: Any) -> str:
    return p.name.rsplit(".", 1)[0]


def _is_path_ref(ref: str) -> bool:
    return "/" in ref or ref.endswith((".yaml", ".yml"))


def find_recipe(ref: str, base_dir: Optional[Path] = None, exclude: Optional[str] = None) -> Tuple[Any, str]:
    """Locate a recipe: a path (relative to ``base_dir`` or cwd) or a name on the search path.

    Returns (file, origin). ``exclude`` skips one file so a recipe may extend one of the same name further
    down the path (./recipes/stock.yaml extending the built-in stock).
    """
    if _is_path_ref(ref):
        p = Path(ref).expanduser()
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        if not p.is_file():
            raise RecipeError(f"{p}: no such recipe file")
        return p, "path"
    names = []
    for origin, folder in search_path():
        for p in _recipe_files(folder):
            names.append(_stem(p))
            if _stem(p) == ref and (exclude is None or _realpath(p) != exclude):
                return p, origin
    where = ", ".join(o for o, _ in search_path())
    close = difflib.get_close_matches(ref, sorted(set(names)), n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else "; `zlperf recipes list` shows them"
    raise RecipeError(f"no recipe named {ref!r} on the search path ({where}){hint}")


def list_recipes() -> List[RecipeEntry]:
    """Every recipe on the search path, in search order; later ones of a name already seen are shadowed."""
    seen: Dict[str, str] = {}
    out: List[RecipeEntry] = []
    for origin, folder in search_path():
        for p in _recipe_files(folder):
            name = _stem(p)
            try:
                desc = _quick_description(p)
            except Exception:  # a broken recipe still gets listed; validate says what is wrong
                desc = "(does not load: run `zlperf recipes validate`)"
            out.append(RecipeEntry(name, origin, str(p), desc, seen.get(name)))
            seen.setdefault(name, str(p))
    return out


def _quick_description(p: Any) -> str:
    data = yaml.safe_load(p.read_text())
    if isinstance(data, dict) and isinstance(data.get("description"), str):
        return data["description"]
    if isinstance(data, dict) and isinstance(data.get("extends"), str):
        return f"(extends {data['extends']})"
    return ""


# ----------------------------------------------------------------------------------------------
# YAML with positions


class _Collector:
    """Gathers every problem of one load (``validate`` shows all; ``load`` raises the first)."""

    def __init__(self) -> None:
        self.errors: List[str] = []
        self.warnings: List[str] = []

    def error(self, mark: Mark, key: str, problem: str) -> None:
        f, line, col = mark
        self.errors.append(f"{f}:{line}:{col}: {key}: {problem}" if key else f"{f}:{line}:{col}: {problem}")

    def warn(self, mark: Mark, key: str, problem: str) -> None:
        f, line, col = mark
        self.warnings.append(f"{f}:{line}:{col}: {key}: {problem}")


_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


def _mark(fname: str, node: yaml.Node) -> Mark:
    return (fname, node.start_mark.line + 1, node.start_mark.column + 1)


class _Doc:
    """One recipe file as plain values plus the position of every key and value."""

    def __init__(self, fname: str, text: str, errs: _Collector):
        self.fname = fname
        self.values: Dict[str, Any] = {}
        self.key_marks: Dict[str, Mark] = {}  # path -> position of the key
        self.value_marks: Dict[str, Mark] = {}  # path -> position of the value
        self.quoted: set = set()  # paths of quoted scalars: their text starts one column after the mark
        self.ok = True
        try:
            # SafeLoader: plain data only; no tag in a recipe can construct an object or run code.
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            pos = (fname, mark.line + 1, mark.column + 1) if mark else (fname, 1, 1)
            errs.error(pos, "", f"not valid YAML: {problem}")
            self.ok = False
            return
        if node is None:
            errs.error((fname, 1, 1), "", "empty recipe (it needs at least `events:` or `extends:`)")
            self.ok = False
            return
        if not isinstance(node, yaml.MappingNode):
            errs.error(_mark(fname, node), "", "a recipe is a mapping of keys (description:, events:, ...)")
            self.ok = False
            return
        self._constructor = yaml.constructor.SafeConstructor()
        try:
            self.values = self._mapping(node, "", errs)
        except yaml.YAMLError as exc:  # e.g. a bad !!int scalar
            mark = getattr(exc, "problem_mark", None)
            pos = (fname, mark.line + 1, mark.column + 1) if mark else (fname, 1, 1)
            errs.error(pos, "", f"not valid YAML: {getattr(exc, 'problem', exc)}")
            self.ok = False

    def _mapping(self, node: yaml.MappingNode, prefix: str, errs: _Collector) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for knode, vnode in node.value:
            key = self._value(knode, prefix + "?", errs)
            kpath = f"{prefix}{key}"
            if not isinstance(key, str):
                errs.error(_mark(self.fname, knode), prefix.rstrip(".") or "", f"keys must be text, got {key!r}")
                continue
            if key in out:
                errs.error(_mark(self.fname, knode), kpath, "key given twice")
                continue
            self.key_marks[kpath] = _mark(self.fname, knode)
            self.value_marks[kpath] = _mark(self.fname, vnode)
            if isinstance(vnode, yaml.ScalarNode) and vnode.style in ("'", '"'):
                self.quoted.add(kpath)
            out[key] = self._value(vnode, kpath + ".", errs)
        return out

    def _value(self, node: yaml.Node, prefix: str, errs: _Collector) -> Any:
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
            # Scalars go through SafeConstructor, which refuses such tags; collections are built here.
            raise yaml.constructor.ConstructorError(
                None, None, f"tag {node.tag!r} is not allowed (recipes are plain data)", node.start_mark
            )
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, prefix, errs)
        if isinstance(node, yaml.SequenceNode):
            items = []
            for i, item in enumerate(node.value):
                ipath = f"{prefix.rstrip('.')}[{i}]"
                self.value_marks[ipath] = _mark(self.fname, item)
                items.append(self._value(item, ipath + ".", errs))
            return items
        return self._constructor.construct_object(node, deep=True)

    def kmark(self, path: str) -> Mark:
        return self.key_marks.get(path) or self.value_marks.get(path) or (self.fname, 1, 1)

    def vmark(self, path: str) -> Mark:
        return self.value_marks.get(path) or self.key_marks.get(path) or (self.fname, 1, 1)


# ----------------------------------------------------------------------------------------------
# Per-file checks (types), then merge, then whole-recipe checks (events, filters)


def _typename(v: Any) -> str:
    if v is None:
        return "nothing (null)"
    return {bool: "true/false", int: "a whole number", float: "a number", str: "text", list: "a list", dict: "a mapping"}.get(
        type(v), type(v).__name__
    )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_types(doc: _Doc, errs: _Collector) -> Dict[str, Any]:
    """Type-check one file's keys; returns the keys that passed (others are dropped)."""
    good: Dict[str, Any] = {}
    for key, value in doc.values.items():
        km, vm = doc.kmark(key), doc.vmark(key)
        if key not in KEYS:
            close = difflib.get_close_matches(key, list(KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(KEYS)})"
            errs.error(km, key, f"unknown key{hint}")
            continue
        problem = _type_problem(key, value, doc, errs)
        if problem:
            errs.error(vm, key, problem)
            continue
        good[key] = value
    return good


def _type_problem(key: str, value: Any, doc: _Doc, errs: _Collector) -> Optional[str]:
    """What is wrong with the type or range of ``value`` for ``key`` (None if fine)."""
    if key in ("description", "extends", "clock", "output", "backend"):
        if not isinstance(value, str) or not value.strip():
            return f"must be text, got {_typename(value)}"
        if key == "clock" and not _CLOCK_RE.match(value):
            return f"{value!r} is not a trace clock name (e.g. local, global, mono, boot)"
        if key == "output" and ("/" in value or value in (".", "..") or value.startswith("-")):
            # A recipe may only name the file in the current directory; -o on the command line goes anywhere.
            return f"{value!r} must be a bare file name (no '/'): recipes never write outside the output path"
        if key == "backend" and value not in BACKENDS:
            return f"{value!r} is not a backend (one of: {', '.join(BACKENDS)})"
        return None
    if key == "stacks":
        return None if isinstance(value, bool) else f"must be true or false, got {_typename(value)}"
    if key == "buffer_size_kb":
        if not _is_int(value):
            return f"must be a whole number of KiB, got {_typename(value)}"
        return None if value > 0 else "must be more than 0"
    if key == "duration":
        if not (_is_int(value) or isinstance(value, float)):
            return f"must be a number of seconds, got {_typename(value)}"
        return None if value > 0 else "must be more than 0 seconds"
    if key == "events":
        if not isinstance(value, list):
            return f"must be a list of SYS:EVENT names, got {_typename(value)}"
        if not value:
            return "is empty: list at least one SYS:EVENT"
        seen = set()
        for i, ev in enumerate(value):
            ipath = f"events[{i}]"
            if not isinstance(ev, str) or not _EVENT_RE.match(ev):
                errs.error(doc.vmark(ipath), ipath, f"{ev!r} is not a SYS:EVENT name (e.g. kmem:mm_zone_locked)")
            elif ev in seen:
                errs.error(doc.vmark(ipath), ipath, f"{ev} listed twice")
            seen.add(ev)
        return None
    if key == "zone_lock_frames":
        if not isinstance(value, list) or not value:
            return f"must be a non-empty list of kernel function names, got {_typename(value)}"
        for i, fn in enumerate(value):
            if not isinstance(fn, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_.]*$", fn):
                errs.error(doc.vmark(f"zone_lock_frames[{i}]"), f"zone_lock_frames[{i}]",
                           f"{fn!r} is not a kernel function name (e.g. rmqueue_bulk)")
        return None
    if key == "filters":
        if not isinstance(value, dict):
            return f"must be a mapping of SYS:EVENT to a filter expression, got {_typename(value)}"
        for ev, expr in list(value.items()):
            path = f"filters.{ev}"
            if not _EVENT_RE.match(ev):
                errs.error(doc.kmark(path), path, f"{ev!r} is not a SYS:EVENT name")
                del value[ev]
            elif expr is not None and (not isinstance(expr, str) or not expr.strip()):
                errs.error(doc.vmark(path), path, f"must be a filter expression in quotes or null, got {_typename(expr)}")
                del value[ev]
        return None
    if key == "backend_options":
        if not isinstance(value, dict):
            return f"must be a mapping of backend name to options, got {_typename(value)}"
        for backend, opts in list(value.items()):
            bpath = f"backend_options.{backend}"
            if backend not in _BACKEND_OPTIONS:
                errs.error(doc.kmark(bpath), bpath, f"unknown backend (one of: {', '.join(BACKENDS)})")
                del value[backend]
                continue
            if not isinstance(opts, dict):
                errs.error(doc.vmark(bpath), bpath, f"must be a mapping of options, got {_typename(opts)}")
                del value[backend]
                continue
            for opt, ov in list(opts.items()):
                opath = f"{bpath}.{opt}"
                problem = _option_problem(backend, opt, ov)
                if problem:
                    where = doc.kmark(opath) if problem.startswith("unknown") else doc.vmark(opath)
                    errs.error(where, opath, problem)
                    del opts[opt]
        return None
    return None


def _option_problem(backend: str, opt: str, value: Any) -> Optional[str]:
    known = _BACKEND_OPTIONS[backend]
    if opt not in known:
        return f"unknown option for {backend} (known: {', '.join(f'{k} ({v})' for k, v in known.items())})"
    if opt == "file_version" and value not in (6, 7):
        return f"must be 6 or 7, got {value!r}"
    if opt == "compression" and not (isinstance(value, str) and _COMPRESSION_RE.match(value)):
        return f"must be any, none or a compression algorithm name, got {value!r}"
    if opt == "mmap_pages" and not (_is_int(value) and value > 0 and value & (value - 1) == 0):
        return f"must be a power of two, got {value!r}"
    if opt == "kernel_callchains_only" and not isinstance(value, bool):
        return f"must be true or false, got {_typename(value)}"
    return None


def _resolve_file(ref: Union[str, Path]) -> Tuple[Any, str]:
    if isinstance(ref, Path):
        if not ref.is_file():
            raise RecipeError(f"{ref}: no such recipe file")
        return ref, "path"
    return find_recipe(ref)


def _load_chain(
    src: Any, origin: str, errs: _Collector, stack: List[str], extends_mark: Optional[Mark] = None
) -> Optional[Recipe]:
    """Load ``src`` and everything it extends, merged; type errors go to ``errs``."""
    fname = str(src)
    real = _realpath(src) or fname
    if real in stack:
        cycle = " -> ".join(_short(p) for p in [*stack[stack.index(real):], real])
        errs.error(extends_mark or (fname, 1, 1), "extends", f"cycle: {cycle}")
        return None
    try:
        text = src.read_text()
    except OSError as exc:
        raise RecipeError(f"{fname}: cannot read recipe ({exc.strerror})")
    except UnicodeDecodeError:
        errs.error((fname, 1, 1), "", "not a text file")
        return None
    doc = _Doc(fname, text, errs)
    if not doc.ok:
        return None
    values = _check_types(doc, errs)
    base: Optional[Recipe] = None
    if "extends" in values:
        ref = values["extends"]
        here = Path(fname).parent if origin != "built-in" or _realpath(src) else None
        try:
            parent, porigin = find_recipe(ref, base_dir=here, exclude=real)
        except RecipeError as exc:
            errs.error(doc.vmark("extends"), "extends", str(exc))
            return None
        base = _load_chain(parent, porigin, errs, [*stack, real], doc.vmark("extends"))
        if base is None:
            return None
    name = _stem(src)
    recipe = Recipe(name=name, path=fname, origin=origin)
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


def _short(path: str) -> str:
    """A path relative to the current directory when that is shorter (for messages)."""
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if len(rel) < len(path) else path


FormatLookup = Callable[[str], Optional[EventFormat]]


def _default_lookup(event: str) -> Optional[EventFormat]:
    """Live kernel format when the event exists here, else the built-in table."""
    from zlperf.tracefs import live_event_format

    return live_event_format(event) or known_format(event)


def _check_recipe(recipe: Recipe, errs: _Collector, lookup: FormatLookup) -> None:
    """Checks that need the merged recipe: events present, filters on recorded events and real fields."""
    top = recipe.marks.get("", (recipe.path, 1, 1))
    if not recipe.events and not errs.errors:  # a malformed events: key was reported already
        errs.error(top, "events", "no events: list at least one SYS:EVENT (or extend a recipe that has them)")
    for ev, expr in recipe.filters.items():
        mark = recipe.marks.get(f"filters.{ev}", top)
        if ev not in recipe.events:
            errs.error(mark, f"filters.{ev}", f"filter on an event this recipe does not record (events: {', '.join(recipe.events)})")
            continue
        fmt = lookup(ev)
        if fmt is None:
            errs.warn(mark, f"filters.{ev}", "event unknown here and to zlperf's table: filter fields not checked")
        for offset, problem in check_filter(expr, fmt):
            line_mark = (mark[0], mark[1], mark[2] + offset) if offset >= 0 else mark
            errs.error(line_mark, f"filters.{ev}", problem)


# ----------------------------------------------------------------------------------------------
# Filter expressions (kernel/trace/trace_events_filter.c syntax)

_TOKEN_RE = re.compile(
    r"\s*(?:(?P<op>==|!=|<=|>=|<|>|&&|\|\||&|~|!|\(|\))"
    r"|(?P<str>\"[^\"]*\"|'[^']*')"
    r"|(?P<word>[^\s()!=<>&|~\"']+))"
)
_CMP_OPS = {"==", "!=", "<", "<=", ">", ">=", "&", "~"}
_NUM_RE = re.compile(r"^-?(0x[0-9a-fA-F]+|[0-9]+)$")
_FIELD_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.function)?$")


def check_filter(expr: str, fmt: Optional[EventFormat]) -> List[Tuple[int, str]]:
    """Problems of a tracefs filter ``expr`` as (character offset, message); [] when it is fine.

    Checks the grammar (predicates ``FIELD OP VALUE`` joined by && || ! and parentheses), that each
    FIELD is in ``fmt`` (skipped when ``fmt`` is None) and that the value fits the field's type.
    """
    from zlperf.tracefs import FILTER_PSEUDO_FIELDS

    tokens: List[Tuple[str, str, int]] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN_RE.match(expr, pos)
        if not m or m.end() == pos:
            if expr[pos:].strip() == "":
                break
            return [(pos, f"cannot read the filter at {expr[pos:]!r}")]
        kind = m.lastgroup or ""
        text = m.group(kind)
        tokens.append((kind, text, m.start(kind)))
        pos = m.end()
    problems: List[Tuple[int, str]] = []
    i = 0

    def at(j: int) -> Tuple[str, str, int]:
        return tokens[j] if j < len(tokens) else ("end", "", len(expr))

    def pred() -> None:
        nonlocal i
        kind, text, off = at(i)
        if kind == "op" and text == "!":
            i += 1
            pred()
            return
        if kind == "op" and text == "(":
            i += 1
            expression()
            k2, t2, o2 = at(i)
            if t2 != ")":
                raise _FilterSyntax(off, "missing ')' for this '('")
            i += 1
            return
        if kind != "word" or not _FIELD_NAME_RE.match(text):
            raise _FilterSyntax(off, f"expected a field name, got {text or 'the end'!r}")
        kop, op, ooff = at(i + 1)
        if kop != "op" or op not in _CMP_OPS:
            raise _FilterSyntax(ooff, f"expected a comparison (== != < <= > >= & ~) after {text!r}")
        kval, val, voff = at(i + 2)
        if kval not in ("word", "str"):
            raise _FilterSyntax(voff, f"expected a value after {text} {op}")
        i += 3
        _check_predicate(text, off, op, ooff, kval, val, voff, fmt, FILTER_PSEUDO_FIELDS, problems)

    def expression() -> None:
        nonlocal i
        pred()
        while at(i)[1] in ("&&", "||"):
            i += 1
            pred()

    try:
        if not tokens:
            return [(0, "empty filter")]
        expression()
        if i < len(tokens):
            raise _FilterSyntax(at(i)[2], f"unexpected {at(i)[1]!r}")
    except _FilterSyntax as exc:
        return [(exc.offset, exc.problem)]
    return problems


class _FilterSyntax(Exception):
    def __init__(self, offset: int, problem: str):
        super().__init__(problem)
        self.offset = offset
        self.problem = problem


def _check_predicate(
    name: str, off: int, op: str, ooff: int, kval: str, val: str, voff: int,
    fmt: Optional[EventFormat], pseudo: Dict[str, str], problems: List[Tuple[int, str]],
) -> None:
    """Field exists, operator and value fit its type: the checks the kernel's filter parser makes."""
    if fmt is None:
        return
    base, _, suffix = name.partition(".")
    f = fmt.field(base)
    if f is None and base not in pseudo:
        own = [x for x in fmt.field_names if not x.startswith("common_")]
        close = difflib.get_close_matches(base, fmt.field_names + list(pseudo), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        problems.append((off, f"{fmt.full_name} has no field {base!r} ({hint}fields: {', '.join(own)})"))
        return
    is_string = pseudo.get(base) == "string" if f is None else (f.is_string or f.type.startswith("char"))
    if suffix and (is_string or f is None):
        problems.append((off, f"'.{suffix}' only applies to a numeric field holding an address"))
        return
    if is_string:
        if op not in ("==", "!=", "~"):
            problems.append((ooff, f"{base} is text: compare it with ==, != or ~ (glob)"))
        elif kval != "str":
            problems.append((voff, f"{base} is text: put {val!r} in quotes (the kernel requires them)"))
    elif suffix == "function":
        # Since v6.2 (commit 39b3ec14ffad) an address field may be compared as FIELD.function == SYMBOL.
        if op not in ("==", "!="):
            problems.append((ooff, f"{name} compares with == or != to a function name"))
        elif kval != "word":
            problems.append((voff, f"{name} takes a bare function name, not a quoted string"))
    else:
        if op == "~":
            problems.append((ooff, f"{base} is a number: '~' (glob) only works on text fields"))
        elif not (kval == "word" and _NUM_RE.match(val)):
            problems.append((voff, f"{base} is a number: {val!r} is not one (decimal or 0x hex)"))
        elif val.startswith("-") and f is not None and not f.signed:
            problems.append((voff, f"{base} is unsigned ({f.type}): {val} is out of range"))


# ----------------------------------------------------------------------------------------------
# Public entry points


def load_recipe(
    ref: Union[str, Path], lookup: Optional[FormatLookup] = None, warn: Optional[Callable[[str], None]] = None
) -> Recipe:
    """Find, load, merge and validate a recipe (a name on the search path, or a path).

    Raises :class:`~zlperf.errors.RecipeError` naming file:line:column and key of the first problem.
    ``lookup`` gives event formats for filter checks (default: live kernel, else the built-in table).
    """
    src, origin = _resolve_file(Path(ref) if isinstance(ref, Path) else ref)
    errs = _Collector()
    recipe = _load_chain(src, origin, errs, [])
    if recipe is not None:
        _check_recipe(recipe, errs, lookup or _default_lookup)
    if errs.errors:
        more = len(errs.errors) - 1
        tail = f" (and {more} more: zlperf recipes validate {src})" if more else ""
        raise RecipeError(errs.errors[0] + tail)
    assert recipe is not None
    if warn is not None:
        for w in errs.warnings:
            warn(w)
    return recipe


def validate_file(path: Union[str, Path], lookup: Optional[FormatLookup] = None) -> Tuple[List[str], List[str]]:
    """Every problem of the recipe at ``path`` (or named ``path``): (errors, warnings), each one line."""
    errs = _Collector()
    try:
        src, origin = _resolve_file(Path(path) if _is_path_ref(str(path)) or Path(path).is_file() else str(path))
        recipe = _load_chain(src, origin, errs, [])
    except RecipeError as exc:
        return [str(exc)], []
    if recipe is not None:
        _check_recipe(recipe, errs, lookup or _default_lookup)
    return errs.errors, errs.warnings


def recipe_yaml(recipe: Recipe) -> str:
    """The merged recipe as YAML, headed by a comment naming the files it came from."""
    head = [f"# recipe {recipe.name} ({recipe.origin}: {recipe.path})"]
    if len(recipe.chain) > 1:
        head.append("# merged from: " + " -> ".join(recipe.chain))
    body = yaml.safe_dump(recipe.to_dict(), sort_keys=False, default_flow_style=False, width=110)
    return "\n".join(head) + "\n" + body
