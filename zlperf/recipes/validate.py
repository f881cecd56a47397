"""Recipe checks: each file's keys, types and ranges; then the merged recipe's events and filters.

Every problem names file:line:column and the key; a key that fails is dropped so that the rest of the
file can still be checked (``zlperf recipes validate`` shows every problem at once).
"""

from __future__ import annotations

__all__ = ["FormatLookup", "check_types", "check_recipe"]

import difflib
import math
import re
from typing import Any, Callable, Dict, Optional

from zlperf.formats import EventFormat
from zlperf.recipes.budgets import parse_budgets
from zlperf.recipes.filters import check_filter
from zlperf.recipes.metadata import check_owner, check_report, check_requires, check_version
from zlperf.recipes.model import BACKEND_OPTIONS, BACKENDS, KEYS, Recipe
from zlperf.recipes.yamldoc import Problems, YamlDoc

#: Gives the format of ``SYS:NAME`` for filter checks, or None when it is unknown.
FormatLookup = Callable[[str], Optional[EventFormat]]

_EVENT_RE = re.compile(r"^[A-Za-z0-9_]+:[A-Za-z0-9_]+$")
_CLOCK_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_COMPRESSION_RE = re.compile(r"^[a-z0-9]+$")
_FUNCTION_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")

#: Upper bounds far above any real use, so that an absurd value is named here, not deep in a backend.
MAX_BUFFER_KB = 1 << 30  #: 1 TiB of ring buffer per CPU
MAX_DURATION = 365 * 24 * 3600.0  #: a year
MAX_MMAP_PAGES = 1 << 24  #: 64 GiB of 4 KiB pages per CPU


def _typename(v: Any) -> str:
    if v is None:
        return "nothing (null)"
    return {bool: "true/false", int: "a whole number", float: "a number", str: "text", list: "a list", dict: "a mapping"}.get(
        type(v), type(v).__name__
    )


def _short_number(v: Any) -> str:
    """``repr(v)`` cut to a readable length (a recipe may hold a 4000-digit number)."""
    if _is_int(v) and v.bit_length() > 128:
        return f"a {v.bit_length()}-bit number"  # repr() refuses past 4300 digits, and nobody reads them
    text = repr(v)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_types(doc: YamlDoc, errs: Problems) -> Dict[str, Any]:
    """Type-check one file's keys; returns the keys that passed (others are dropped)."""
    good: Dict[str, Any] = {}
    for key, value in doc.values.items():
        km, vm = doc.kmark(key), doc.vmark(key)
        if key not in KEYS:
            close = difflib.get_close_matches(key, list(KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(KEYS)})"
            errs.error(km, key, f"unknown key{hint}")
            continue
        if key in _STRUCTURED:  # read into their merged form here; each bad part is reported at its place
            parsed = _STRUCTURED[key](value, doc, errs)
            if parsed is not None:
                good[key] = parsed
            continue
        problem = _type_problem(key, value, doc, errs)
        if problem:
            errs.error(vm, key, problem)
            continue
        good[key] = value
    return good


#: Keys whose value is read into another form (budgets: by scope; report: normalised defaults).
_STRUCTURED: Dict[str, Callable[[Any, YamlDoc, Problems], Any]] = {
    "budgets": parse_budgets,
    "requires": check_requires,
    "report": check_report,
}


def _type_problem(key: str, value: Any, doc: YamlDoc, errs: Problems) -> Optional[str]:
    """What is wrong with the type or range of ``value`` for ``key`` (None if fine)."""
    if key == "version":
        return check_version(value)
    if key == "owner":
        return check_owner(value)
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
        if value > MAX_BUFFER_KB:
            return f"{_short_number(value)} KiB per CPU is more memory than any machine has (at most {MAX_BUFFER_KB})"
        return None if value > 0 else "must be more than 0"
    if key == "duration":
        if not (_is_int(value) or isinstance(value, float)):
            return f"must be a number of seconds, got {_typename(value)}"
        if not math.isfinite(value) or value > MAX_DURATION:
            return f"{_short_number(value)} is not a number of seconds zlperf can wait (at most {MAX_DURATION:g})"
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
                shown = repr(ev) if isinstance(ev, str) else _typename(ev)
                errs.error(doc.vmark(ipath), ipath, f"{shown[:80]} is not a SYS:EVENT name (e.g. kmem:mm_zone_locked)")
            elif ev in seen:
                errs.error(doc.vmark(ipath), ipath, f"{ev} listed twice")
            else:
                seen.add(ev)
        return None
    if key == "zone_lock_frames":
        if not isinstance(value, list) or not value:
            return f"must be a non-empty list of kernel function names, got {_typename(value)}"
        for i, fn in enumerate(value):
            if not isinstance(fn, str) or not _FUNCTION_RE.match(fn):
                shown = repr(fn) if isinstance(fn, str) else _typename(fn)
                errs.error(doc.vmark(f"zone_lock_frames[{i}]"), f"zone_lock_frames[{i}]",
                           f"{shown[:80]} is not a kernel function name (e.g. rmqueue_bulk)")
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
            if backend not in BACKEND_OPTIONS:
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
    known = BACKEND_OPTIONS[backend]
    if opt not in known:
        return f"unknown option for {backend} (known: {', '.join(f'{k} ({v})' for k, v in known.items())})"
    if opt == "file_version" and not (_is_int(value) and value in (6, 7)):
        return f"must be 6 or 7, got {_short_number(value)}"
    if opt == "compression" and not (isinstance(value, str) and _COMPRESSION_RE.match(value)):
        return f"must be any, none or a compression algorithm name, got {_short_number(value)}"
    if opt == "mmap_pages" and not (_is_int(value) and 0 < value <= MAX_MMAP_PAGES and value & (value - 1) == 0):
        return f"must be a power of two up to {MAX_MMAP_PAGES}, got {_short_number(value)}"
    if opt == "kernel_callchains_only" and not isinstance(value, bool):
        return f"must be true or false, got {_typename(value)}"
    return None


def check_recipe(recipe: Recipe, errs: Problems, lookup: FormatLookup) -> None:
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
