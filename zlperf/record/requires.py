"""A recipe's ``requires`` checked on this machine, first in preflight: events, kernel version, config, features.

Each gap is named with where zlperf looked; a requirement that cannot be checked here (no kernel config
to read) is a note, never a silent pass nor a refusal.
"""

from __future__ import annotations

__all__ = ["check_requires_here", "kernel_version", "requires_message"]

import os
import re
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from zlperf.errors import ZlperfError
from zlperf.recipes import Recipe
from zlperf.recipes.metadata import Requirement, parse_requirement
from zlperf.record.tracefs import Tracefs
from zlperf.safeio import read_limited

#: A kernel config is ~300 KB uncompressed; far more is not one.
_MAX_CONFIG_BYTES = 16 << 20
_BTF = Path("/sys/kernel/btf/vmlinux")
_KALLSYMS = Path("/proc/kallsyms")
_CONFIG_LINE = re.compile(r"^(CONFIG_[A-Z0-9_]+)=(.*)$", re.M)


def kernel_version(release: Optional[str] = None) -> Tuple[int, ...]:
    """The leading numbers of a kernel release: '6.18.44-fc-v1045' -> (6, 18, 44)."""
    m = re.match(r"^(\d+)(?:\.(\d+))?(?:\.(\d+))?", release or os.uname().release)
    return tuple(int(x) for x in m.groups() if x is not None) if m else ()


def _compare(have: Tuple[int, ...], op: str, want: Tuple[int, ...]) -> bool:
    n = max(len(have), len(want))
    a, b = have + (0,) * (n - len(have)), want + (0,) * (n - len(want))
    return {">=": a >= b, ">": a > b, "<=": a <= b, "<": a < b, "==": a == b}[op]


def _kernel_config() -> Tuple[Optional[Dict[str, str]], str]:
    """(CONFIG_NAME -> value, where it was read) or (None, where zlperf looked)."""
    release = os.uname().release
    for path in (Path("/proc/config.gz"), Path(f"/boot/config-{release}")):
        if not path.exists():
            continue
        try:
            text = read_limited(path, _MAX_CONFIG_BYTES, "kernel config", gunzip=True).decode("utf-8", "replace")
        except ZlperfError:
            continue
        return dict(_CONFIG_LINE.findall(text)), str(path)
    return None, f"/proc/config.gz or /boot/config-{release}"


def _kallsyms_shows_addresses() -> bool:
    """True when /proc/kallsyms gives this user real addresses (kptr_restrict hides them as zeros)."""
    try:
        with open(_KALLSYMS, "rb") as fh:
            lines = fh.read(4096).splitlines()[:16]
    except OSError:
        return False
    return any(line.split(b" ", 1)[0].strip(b"0") for line in lines)


def _feature_gap(name: str, tfs: Tracefs) -> Optional[str]:
    """Why feature ``name`` is missing here (None when present)."""
    if name == "btf":
        return None if _BTF.exists() else f"btf (no {_BTF}: a kernel built without CONFIG_DEBUG_INFO_BTF)"
    if name == "bpftrace":
        return None if shutil.which("bpftrace") else "bpftrace (not installed: apt install bpftrace)"
    if name == "stacktrace":
        opt = tfs.root / "options" / "stacktrace"
        return None if opt.exists() else f"stacktrace (no {opt}: a kernel built without CONFIG_STACKTRACE)"
    if name == "kallsyms":
        return None if _kallsyms_shows_addresses() else \
            f"kallsyms ({_KALLSYMS} shows no addresses to uid {os.geteuid()}: kernel.kptr_restrict, or run as root)"
    if name == "instances":
        inst = tfs.root / "instances"
        return None if inst.is_dir() else f"instances (no {inst})"
    return f"{name} (a feature this zlperf does not know)"


def check_requires_here(recipe: Recipe, tfs: Tracefs) -> Tuple[List[str], List[str]]:
    """(what is missing, what could not be checked) of ``recipe.requires`` on this machine, one phrase each."""
    missing: List[str] = []
    unknown: List[str] = []
    config: Optional[Dict[str, str]] = None
    config_where = ""
    for text in recipe.requires:
        req, problem = parse_requirement(text)
        if req is None:  # validated when the recipe loaded; kept for recipes built in code
            missing.append(f"{text!r} ({problem})")
            continue
        gap = _gap(req, tfs)
        if req.kind == "config":
            if config is None and not config_where:
                config, config_where = _kernel_config()
            if config is None:
                unknown.append(f"{req.value} (no kernel config in {config_where})")
                continue
            value = config.get(req.value)
            gap = None if value in ("y", "m") else f"{req.value} (not set in {config_where})"
        if gap:
            missing.append(gap)
    return missing, unknown


def _gap(req: Requirement, tfs: Tracefs) -> Optional[str]:
    if req.kind == "event":
        return None if tfs.has_event(req.value) else f"event {req.value} (no {tfs.event_dir(req.value)})"
    if req.kind == "kernel":
        release = os.uname().release
        ok = _compare(kernel_version(release), req.op, req.version_tuple)
        return None if ok else f"kernel {req.op} {req.value} (this is {release})"
    if req.kind == "feature":
        return _feature_gap(req.value, tfs)
    return None


def requires_message(recipe: Recipe, missing: List[str]) -> str:
    """The one-line refusal: which recipe, what it requires that this machine lacks, where it says so."""
    f, line, col = recipe.marks.get("requires", (recipe.path, 1, 1))
    return (f"{f}:{line}:{col}: requires: recipe {recipe.name} needs what this machine lacks: "
            f"{'; '.join(missing)}")
