# SPDX-License-Identifier: GPL-2.0-only
"""zlperf's zone-lock report through trace-cmd's own Python API (``import tracecmd``).

    zlperf tracecmd-script plugins/tracecmd/zone_lock.py trace.dat [--by zone,caller] [--top N] [--json]
    python3 plugins/tracecmd/zone_lock.py trace.dat     # with trace-cmd's SWIG bindings on PYTHONPATH

Events are read with ``Trace.read_next_event()`` and their fields with ``num_field`` /
``str_field`` (the upstream API); rows go to zlperf's one analysis core, and the report
printed is the one ``zlperf report`` prints. Nothing is computed here. Symbols and task
names come from the file's saved kallsyms and cmdlines (zlperf's trace.dat metadata
reader), since the upstream API exposes neither as a table.
"""

from __future__ import annotations

import argparse
import os
import sys


def _find_zlperf() -> None:
    here = os.path.dirname(os.path.realpath(__file__))
    for up in (2, 3):  # checkout: plugins/tracecmd -> repo root; installed: zlperf/plugins/tracecmd -> site
        root = os.path.normpath(os.path.join(here, *([".."] * up)))
        if os.path.isfile(os.path.join(root, "zlperf", "__init__.py")) and root not in sys.path:
            sys.path.append(root)
            return


_find_zlperf()

import tracecmd  # noqa: E402  (upstream's module, or zlperf's under `zlperf tracecmd-script`)

from zlperf.analysis import AnalysisOptions  # noqa: E402
from zlperf.analysis.rows import RowCollector  # noqa: E402
from zlperf.readers import open_trace  # noqa: E402
from zlperf.report import build_document  # noqa: E402

#: The fields each analysed event needs, read through the tracecmd API.
NUMERIC = {
    "kmem:mm_zone_lock_contended": ("node_id", "count", "caller"),
    "kmem:mm_zone_locked": ("node_id", "count", "contended", "caller", "wait_ns"),
    "kmem:mm_zone_lock_unlock": ("node_id", "count", "caller"),
    "lock:contention_begin": ("lock_addr", "flags"),
    "lock:contention_end": ("lock_addr", "ret"),
    "zone_lock:zone_lock_start_locking": ("zone",),
    "zone_lock:zone_lock_acquire_returned": ("zone", "success"),
    "zone_lock:zone_lock_released": ("zone",),
}
STRINGS = {"kmem:mm_zone_lock_contended": ("name",), "kmem:mm_zone_locked": ("name",),
           "kmem:mm_zone_lock_unlock": ("name",)}
SIGNED = {"node_id", "count", "ret"}  # num_field reads fields as unsigned: restore the sign
# Upstream's Event has a name but no system: the analysed event names are unique without it.
FULL_NAME = {name.split(":", 1)[1]: name for name in NUMERIC}
FULL_NAME["kernel_stack"] = "ftrace:kernel_stack"


def _signed32(v: int) -> int:
    return v - (1 << 32) if v >= 1 << 31 else v


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="zone_lock.py", description="zone->lock report via trace-cmd's Python API")
    p.add_argument("file", nargs="?", default="trace.dat")
    p.add_argument("--by", default="zone,caller")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    with open_trace(args.file) as meta:  # symbols, cmdlines, clock, zone names: the file's own metadata
        info = meta.info
    collector = RowCollector(info, AnalysisOptions(top=args.top))
    trace = tracecmd.Trace(args.file)
    while True:
        ev = trace.read_next_event()
        if ev is None:
            break
        name = FULL_NAME.get(ev.name, ev.name)
        if name == "ftrace:kernel_stack":
            frames = [int(x, 16) for x in _stack_addresses(ev, trace.long_size)]
            collector.add(name, ev.cpu, ev.ts, ev.pid, ("caller",), (frames,))
            continue
        nums = NUMERIC.get(name, ())
        values = []
        for f in nums:
            v = ev.num_field(f)
            values.append(_signed32(v) if f in SIGNED and v is not None else v)
        strs = STRINGS.get(name, ())
        values.extend(ev.str_field(f) for f in strs)
        collector.add(name, ev.cpu, ev.ts, ev.pid, nums + strs, tuple(values))
    doc = build_document(collector.result())
    for warning in doc["warnings"]:
        print(f"zlperf: warning: {args.file}: {warning}", file=sys.stderr)
    if args.json:
        import json

        print(json.dumps(doc, indent=1))
    else:
        from zlperf.render.text import render_text

        sys.stdout.write(render_text(doc, by=[d for d in args.by.split(",") if d], top=args.top))
    return 0


def _stack_addresses(ev, long_size: int) -> list[str]:
    """The raw return addresses of a kernel_stack event (innermost first), as hex strings.

    The API gives the field's declared size (8 frames): deeper frames are not seen here, which
    can shorten contended stacks but not change callers (the caller frame comes early).
    """
    data = ev["caller"].data
    step = long_size
    out = []
    for i in range(0, len(data) - step + 1, step):
        addr = int.from_bytes(data[i:i + step], "little")
        if addr == 0:
            break
        out.append(f"{addr:x}")
    return out


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
