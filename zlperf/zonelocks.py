"""The zone-lock sidecar ``OUT.zones.json``: lock address -> (node, zone name) of a stock recording.

lock:contention_* events carry only ``&zone->lock``; ``zlperf record`` names each zone lock while it
records (see :mod:`zlperf.record.zonenames`) and keeps the names beside the recording in this small JSON
document, which :func:`zlperf.readers.open_trace` reads back. Both halves of the format live here.
"""

from __future__ import annotations

__all__ = ["SIDECAR_SCHEMA", "MAX_SIDECAR_BYTES", "sidecar_path", "write_zone_locks", "load_zone_locks"]

import json
import os
import re
from pathlib import Path
from typing import Dict, Optional, Tuple, Union

from zlperf.errors import ZlperfError, warn
from zlperf.safeio import atomic_write, read_text_limited

SIDECAR_SCHEMA = "zlperf.zonelocks/1"
#: A machine has a few zones per node: a sidecar is a few hundred bytes. Anything past this is not one.
MAX_SIDECAR_BYTES = 1 << 20
#: What a zone name looks like (the kernel's are DMA, DMA32, Normal, HighMem, Movable, Device).
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,15}")
#: NUMA node ids are below MAX_NUMNODES (1 << CONFIG_NODES_SHIFT, at most 1 << 10 in Kconfig).
_MAX_NODE = 1 << 10


def sidecar_path(trace_path: Union[str, Path]) -> Path:
    """Where the zone names of a recording live: the recording's path + '.zones.json'."""
    p = Path(trace_path)
    return p.with_name(p.name + ".zones.json")


def write_zone_locks(trace_path: Union[str, Path], locks: Dict[int, Tuple[int, str]], *,
                     mode: int = 0o644) -> Path:
    """Write the sidecar for ``trace_path`` (atomically, never through a symlink); returns its path."""
    doc = {
        "schema": SIDECAR_SCHEMA,
        "kernel": os.uname().release,
        "locks": {f"{addr:#x}": {"node": node, "zone": name} for addr, (node, name) in sorted(locks.items())},
    }
    dest = sidecar_path(trace_path)
    atomic_write(dest, json.dumps(doc, indent=1) + "\n", "zone-lock sidecar", mode=mode)
    return dest


def load_zone_locks(trace_path: Union[str, Path], path: Optional[Union[str, Path]] = None) -> Dict[int, Tuple[int, str]]:
    """Lock address -> (node, zone name) from the recording's sidecar (or ``path``); {} when there is none.

    A sidecar that does not parse or holds impossible values gives one warning and is ignored
    (the report then shows addresses). An explicit ``path`` that is missing is an error.
    """
    side = Path(path) if path is not None else sidecar_path(trace_path)
    if path is None and not side.exists() and not side.is_symlink():
        return {}
    try:
        text = read_text_limited(side, MAX_SIDECAR_BYTES, "zone-lock sidecar (.zones.json)")
    except ZlperfError as exc:
        if path is not None:
            raise
        warn(f"{exc}: zone locks show as addresses")
        return {}
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("schema") != SIDECAR_SCHEMA:
            raise ValueError(f"schema is not {SIDECAR_SCHEMA}")
        locks = doc.get("locks")
        if not isinstance(locks, dict):
            raise ValueError("'locks' must be an object of address -> {node, zone}")
        out: Dict[int, Tuple[int, str]] = {}
        for key, entry in locks.items():
            if not isinstance(entry, dict):
                raise ValueError(f"lock {key[:40]!r}: must be an object with node and zone")
            node, name = entry.get("node"), entry.get("zone")
            if type(node) is not int or not 0 <= node < _MAX_NODE:
                raise ValueError(f"lock {key[:40]!r}: node must be a NUMA node number below {_MAX_NODE}")
            if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
                raise ValueError(f"lock {key[:40]!r}: zone must be a zone name such as Normal")
            if not isinstance(key, str) or not re.fullmatch(r"0x[0-9a-fA-F]{1,16}", key):
                raise ValueError(f"lock {key[:40]!r}: address must be hex such as 0xffff888000000000")
            out[int(key, 16)] = (node, name)
        return out
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, json.JSONDecodeError):
            why, where = exc.msg, f"line {exc.lineno}: "
        else:
            why, where = str(exc) if not isinstance(exc, RecursionError) else "nested too deeply", ""
        warn(f"{side}: {where}not a zone-lock sidecar ({why}): ignored, zone locks show as addresses")
        return {}
