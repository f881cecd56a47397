"""Recipe metadata: ``version``, ``owner``, ``requires`` (what the machine must have) and ``report`` defaults.

``requires`` items are parsed here into :class:`Requirement`; ``zlperf record`` checks them on the machine
(zlperf.record.requires) before anything else. ``report`` holds the defaults of ``zlperf report --recipe``.
"""

from __future__ import annotations

__all__ = ["FEATURES", "REPORT_DIMENSIONS", "Requirement", "parse_requirement", "check_version", "check_owner",
           "check_requires", "check_report", "MAX_REQUIRES", "MAX_TOP"]

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from zlperf.recipes.yamldoc import Problems, YamlDoc, one_line

#: Kernel and machine features a recipe may require, with what each means (the checks are in record/requires.py).
FEATURES: Dict[str, str] = {
    "btf": "kernel BTF at /sys/kernel/btf/vmlinux (zone names on stock kernels)",
    "bpftrace": "bpftrace installed (names zone locks on stock kernels)",
    "stacktrace": "kernel stack traces of events (tracefs options/stacktrace)",
    "kallsyms": "/proc/kallsyms shows addresses to this user (callers as symbols)",
    "instances": "tracefs instances (recording where trace-cmd record is refused)",
}

#: What ``report: by:`` may list (as ``zlperf report --by``).
REPORT_DIMENSIONS = ("zone", "caller", "cpu", "task", "holder")

#: Most requires items (a recipe needs a few events and features).
MAX_REQUIRES = 64
#: Largest ``report: top:`` (rows per table).
MAX_TOP = 1_000_000

_EVENT_RE = re.compile(r"^[A-Za-z0-9_]+:[A-Za-z0-9_]+$")
_KERNEL_RE = re.compile(r"^kernel\s*(?P<op>>=|<=|==|>|<)\s*(?P<version>[0-9]{1,4}(?:\.[0-9]{1,4}){0,2})$")
_CONFIG_RE = re.compile(r"^config:(?P<name>CONFIG_[A-Z0-9_]{1,100})$")
_ZONE_RE = re.compile(r"^[0-9]{1,5}:[A-Za-z0-9_]{1,32}$")
_VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}$")


@dataclass(frozen=True)
class Requirement:
    """One ``requires`` item: an event, a kernel version bound, a kernel config option, or a feature."""

    kind: str  #: "event", "kernel", "config" or "feature"
    value: str  #: SYS:EVENT, the version, CONFIG_NAME or the feature name
    op: str = ""  #: kernel only: >=, >, <=, <, ==
    text: str = ""  #: as written

    @property
    def version_tuple(self) -> Tuple[int, ...]:
        """kernel only: the version as numbers, e.g. (5, 19)."""
        return tuple(int(x) for x in self.value.split("."))


def parse_requirement(item: Any) -> Tuple[Optional[Requirement], Optional[str]]:
    """(the requirement, None) or (None, what is wrong with ``item``)."""
    if not isinstance(item, str):
        return None, f"must be text (SYS:EVENT, 'kernel >= 5.19', 'config:CONFIG_NAME' or a feature), got {type(item).__name__}"
    text = item.strip()
    if _EVENT_RE.match(text) and not text.startswith("config:"):
        return Requirement("event", text, text=text), None
    m = _KERNEL_RE.match(text)
    if m:
        return Requirement("kernel", m.group("version"), m.group("op"), text), None
    m = _CONFIG_RE.match(text)
    if m:
        return Requirement("config", m.group("name"), text=text), None
    if text in FEATURES:
        return Requirement("feature", text, text=text), None
    if text.startswith("kernel"):
        return None, f"{one_line(text)[:60]!r}: write a kernel bound as 'kernel >= 5.19' (>=, >, <=, <, ==)"
    return None, (f"{one_line(text)[:60]!r} is not a requirement: SYS:EVENT, 'kernel >= 5.19', 'config:CONFIG_NAME' "
                  f"or one of {', '.join(FEATURES)}")


def check_version(value: Any) -> Optional[str]:
    """What is wrong with ``version`` (None if fine): text such as '1.2.0'."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"must be text: quote it ('{value}'), or YAML reads it as a number (1.10 would become 1.1)"
    if not isinstance(value, str) or not _VERSION_RE.match(value):
        shown = one_line(repr(value))[:40]
        return f"{shown} is not a version (letters, digits and . + _ -, e.g. '1.2.0')"
    return None


def check_owner(value: Any) -> Optional[str]:
    """What is wrong with ``owner`` (None if fine): one line of text."""
    if not isinstance(value, str) or not value.strip():
        return "must be text: a team or an address"
    if len(value) > 200 or one_line(value) != value:
        return "must be one line of at most 200 characters"
    return None


def check_requires(value: Any, doc: YamlDoc, errs: Problems) -> Optional[List[str]]:
    """The ``requires`` items that parse (each bad one reported at its position); None when not a list."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        errs.error(doc.vmark("requires"), "requires", "must be a list (SYS:EVENT, 'kernel >= 5.19', "
                   "'config:CONFIG_NAME', or a feature)")
        return None
    if len(value) > MAX_REQUIRES:
        errs.error(doc.vmark("requires"), "requires", f"{len(value)} items: at most {MAX_REQUIRES}")
        return None
    out: List[str] = []
    for i, item in enumerate(value):
        req, problem = parse_requirement(item)
        if problem:
            errs.error(doc.vmark(f"requires[{i}]"), f"requires[{i}]", problem)
        elif req is not None and req.text not in out:
            out.append(req.text)
    return out


def check_report(value: Any, doc: YamlDoc, errs: Problems) -> Optional[Dict[str, Any]]:
    """The ``report`` defaults that are valid (by: a list of dimensions, top: N, zone: NODE:NAME)."""
    if not isinstance(value, dict):
        errs.error(doc.vmark("report"), "report", "must be a mapping: by, top, zone")
        return None
    out: Dict[str, Any] = {}
    for key, v in value.items():
        path = f"report.{key}"
        if key == "by":
            dims = [d.strip() for d in v.split(",")] if isinstance(v, str) else v
            if not isinstance(dims, list) or not dims or any(d not in REPORT_DIMENSIONS for d in dims):
                errs.error(doc.vmark(path), path, f"must list some of {', '.join(REPORT_DIMENSIONS)} "
                                                  "(e.g. zone,caller)")
                continue
            out[key] = ",".join(dims)
        elif key == "top":
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_TOP:
                errs.error(doc.vmark(path), path, f"must be a whole number of rows from 0 to {MAX_TOP}")
                continue
            out[key] = v
        elif key == "zone":
            if not isinstance(v, str) or not _ZONE_RE.match(v):
                errs.error(doc.vmark(path), path, "must be a zone as NODE:NAME (e.g. '1:Normal')")
                continue
            out[key] = v
        else:
            errs.error(doc.kmark(path), one_line(path)[:80], "unknown report default (by, top, zone)")
    return out
