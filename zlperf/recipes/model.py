"""What a recipe is: the keys it may have, the backends and their options, and the merged result.

Everything here is plain data; loading (:mod:`zlperf.recipes.load`) fills a :class:`Recipe`.
"""

from __future__ import annotations

__all__ = ["BACKENDS", "KEYS", "BACKEND_OPTIONS", "Mark", "Recipe", "RecipeEntry"]

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

#: Backends ``zlperf record`` drives.
BACKENDS = ("trace-cmd", "perf")

#: Every key a recipe may have, with a one-line meaning (``zlperf recipes show`` and errors use it).
KEYS: Dict[str, str] = {
    "description": "one line shown by `zlperf recipes list`",
    "version": "the recipe's version, as text (e.g. '1.2.0'; not inherited through extends)",
    "owner": "who answers for it: a team or an address (not inherited through extends)",
    "requires": "what the machine must have, checked before recording: SYS:EVENT, 'kernel >= 5.19', "
                "'config:CONFIG_NAME', or a feature (btf, bpftrace, stacktrace, kallsyms, instances)",
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
    "budgets": "upper limits checked by `zlperf check` (and after `zlperf record`): METRIC: LIMIT overall, "
               "and under zones: / callers: per NAME or '*' (every one)",
    "report": "defaults of `zlperf report --recipe/--profile`: by (zone,caller,...), top (N), zone (NODE:NAME)",
}

#: Options each backend accepts from a recipe: a fixed list, never free-form arguments, so that a
#: recipe cannot make a backend run or write anything else.
BACKEND_OPTIONS: Dict[str, Dict[str, str]] = {
    "trace-cmd": {"file_version": "6 or 7 (trace-cmd record only)", "compression": "any, none or an algorithm (zstd, zlib)"},
    "perf": {"mmap_pages": "per-CPU mmap pages, a power of two", "kernel_callchains_only": "true: no user call chains"},
}

#: Where a value was set: (file, line, column), 1-based.
Mark = Tuple[str, int, int]


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
    version: Optional[str] = None
    owner: Optional[str] = None
    requires: List[str] = field(default_factory=list)
    #: {"total": {METRIC: LIMIT}, "zones": {SELECTOR: {METRIC: LIMIT}}, "callers": {...}}; see recipes.budgets
    budgets: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    report: Dict[str, Any] = field(default_factory=dict)  #: report defaults: by, top, zone
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
            if key == "budgets":
                value = budgets_as_written(value)
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
    version: Optional[str] = None
    owner: Optional[str] = None
    qualified: Optional[str] = None  #: ``PACK:NAME`` for a pack's or a built-in recipe
    shadows: Tuple[str, ...] = ()  #: origins of the recipes of the same name found later (hidden by this one)


def budgets_as_written(budgets: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Merged budgets in the form a recipe writes them: overall metrics first, then zones:, callers:."""
    out: Dict[str, Any] = dict(budgets.get("total", {}))
    for scope in ("zones", "callers"):
        if budgets.get(scope):
            out[scope] = {sel: dict(metrics) for sel, metrics in budgets[scope].items()}
    return out
