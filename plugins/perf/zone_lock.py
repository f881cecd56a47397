# SPDX-License-Identifier: GPL-2.0-only
"""zlperf's report from inside ``perf script``: a thin adapter over zlperf.analysis.core.

    perf script -i perf.data -s plugins/perf/zone_lock.py [-- --by zone,caller --top 10 --json]
    perf script -i perf.data -s "$(zlperf perf-script)"          # the installed copy

The handlers only buffer perf's values into columns; every N events they become a
:class:`zlperf.events.Chunk` fed to the same :class:`~zlperf.analysis.core.Analyzer` that
``zlperf report`` uses, and ``trace_end`` prints the same report. perf delivers events in
time order (its ordered-events queue), so the arrival number is each CPU's ``seq``.

perf's quirks handled here: handler arguments are the common values then the event's own
fields in format order (the seed patch's order; fields a later version appends land in
``*_rest``); ``__data_loc`` strings arrive as ``str`` or, once one is not printable, as
``bytearray`` for the rest of the session; kernel addresses are big ints; call chains
(``perf record -g``) are lists of dicts; events without a handler come through
``trace_unhandled``. perf passes no lost-event records to scripts, so the gaps are read
from the file and put before the first sample of their CPU that follows them, where the
perf.data reader puts them.

It runs in perf's embedded Python (Debian's /usr/bin/python3 with python3-numpy from apt),
which does not see a pip-installed zlperf: the package is found from this file's place (a
checkout's plugins/perf/, or an installed zlperf/plugins/perf/), appended to sys.path so
the system's numpy keeps priority.
"""

from __future__ import annotations

# perf's entry points: what perf script calls by name.
__all__ = ["trace_begin", "trace_end", "trace_unhandled", "kmem__mm_zone_lock_contended", "kmem__mm_zone_locked",
           "kmem__mm_zone_lock_unlock", "lock__contention_begin", "lock__contention_end"]

import os
import sys


def _find_zlperf() -> None:
    here = os.path.dirname(os.path.realpath(__file__))
    for up in (2, 3):  # checkout: plugins/perf -> repo root; installed: zlperf/plugins/perf -> site-packages
        root = os.path.normpath(os.path.join(here, *([".."] * up)))
        if os.path.isfile(os.path.join(root, "zlperf", "__init__.py")):
            if root not in sys.path:
                sys.path.append(root)
            return


_find_zlperf()

try:
    from zlperf.analysis import AnalysisOptions
    from zlperf.analysis.rows import RowCollector
    from zlperf.events import MISSED_EVENTS, TraceInfo
except ImportError as _exc:  # say what to install instead of perf's long Python traceback
    sys.stderr.write(f"zone_lock.py: cannot import {_exc.name} in perf's Python ({sys.version.split()[0]}): "
                     "install python3-numpy python3-yaml python3-zstandard (apt), see README\n")
    raise SystemExit(2)

#: Events buffered before they become a chunk.
CHUNK_EVENTS = 65536

_KERNEL_HALF = 1 << 63  # kernel text is in the upper half of the address space (x86-64, arm64)


def _perf_args() -> tuple[str, str | None]:
    """(input file, --kallsyms) from perf's own command line (perf gives scripts neither)."""
    path, kallsyms = "perf.data", None
    try:
        with open("/proc/self/cmdline", "rb") as fh:
            argv = [a.decode("utf-8", "replace") for a in fh.read().split(b"\0")]
    except OSError:
        return path, kallsyms
    if "--" in argv:
        argv = argv[: argv.index("--")]
    for i, a in enumerate(argv):
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if a in ("-i", "--input") and nxt:
            path = nxt
        elif a.startswith("--input="):
            path = a.split("=", 1)[1]
        elif a.startswith("-i") and len(a) > 2 and not a.startswith("--"):
            path = a[2:]
        elif a == "--kallsyms" and nxt:
            kallsyms = nxt
        elif a.startswith("--kallsyms="):
            kallsyms = a.split("=", 1)[1]
    return path, kallsyms


def _options(argv: list[str]):
    import argparse

    p = argparse.ArgumentParser(prog="perf script -s zone_lock.py --", description="zlperf report inside perf script")
    p.add_argument("--by", default="zone,caller", help="group tables: zone,caller,cpu,task")
    p.add_argument("--top", type=int, default=10, help="rows per table and worst cases")
    p.add_argument("--json", action="store_true", help="print the zlperf.report/1 JSON document")
    return p.parse_args(argv)


def _trace_info(path: str, kallsyms: str | None) -> tuple[TraceInfo, list]:
    """The TraceInfo ``zlperf report`` builds (header, symbols) and the file's lost-event gaps.

    perf hands scripts neither the file's header nor its PERF_RECORD_LOST records, so both are
    read from the file itself (records only, no sample decoding).
    """
    from zlperf.errors import ZlperfError
    from zlperf.readers import open_trace

    try:
        with open_trace(path, kallsyms=kallsyms) as reader:  # symbols, and zone names of stock recordings
            return reader.info, reader.gaps()
    except (OSError, ValueError, ZlperfError) as exc:
        return TraceInfo(path=path, format="perf.data", clock="perf", warnings=[
            f"could not read the file itself ({exc}): no symbols, lost events not shown"]), []


class _Collector(RowCollector):
    """The one row collector (zlperf.analysis.rows), plus perf's lost-event gaps put back in place."""

    def __init__(self, info: TraceInfo, options: AnalysisOptions, gaps: list):
        super().__init__(info, options, CHUNK_EVENTS)
        # Lost-event gaps per CPU, each due just before the first sample at or after its time.
        self.gaps: dict[int, list] = {}
        for cpu, ts, count, next_ts in sorted(gaps, key=lambda g: (g[3] is None, g[3] or 0)):
            self.gaps.setdefault(cpu, []).append((next_ts, ts, count))
        self.next_gap = {cpu: g[0][0] for cpu, g in self.gaps.items() if g[0][0] is not None}

    def gap(self, cpu: int, ts: int) -> None:
        """Emit the gaps of ``cpu`` due before an event at ``ts``."""
        pending = self.gaps[cpu]
        while pending and pending[0][0] is not None and pending[0][0] <= ts:
            _, when, count = pending.pop(0)
            self.add(MISSED_EVENTS, cpu, when, -1, ("count",), (count,))
        if pending and pending[0][0] is not None:
            self.next_gap[cpu] = pending[0][0]
        else:
            self.next_gap.pop(cpu, None)

    def finish(self) -> None:
        """Gaps after a CPU's last sample, then the last chunk."""
        for cpu, pending in self.gaps.items():
            for _, when, count in pending:
                self.add(MISSED_EVENTS, cpu, when, -1, ("count",), (count,))
            pending.clear()
        self.flush()


_USER_MAPS = ("[unknown]", "[vdso]", "[vsyscall]", "[heap]", "[stack]", "[anon]")


def _kernel_ips(chain: list) -> list:
    """The kernel part of perf's call chain: the innermost frames perf placed in a kernel map.

    perf drops its PERF_CONTEXT_* markers before handing the chain over; kernel frames come
    first, in [kernel.kallsyms] or a [module]. A user frame can hold any value (frame-pointer
    walks read garbage), so the address alone cannot tell.
    """
    out = []
    for f in chain:
        dso = f.get("dso") or ""
        if not (dso.startswith("[") and dso not in _USER_MAPS and f.get("ip", 0) >= _KERNEL_HALF):
            break
        out.append(f["ip"])
    return out


_state: dict = {}


def _add(name, cpu, secs, nsecs, pid, comm, callchain, field_names, values) -> None:
    c = _state["collector"]
    ts = secs * 1_000_000_000 + nsecs
    due = c.next_gap.get(cpu)
    if due is not None and due <= ts:
        c.gap(cpu, ts)
    if callchain and isinstance(callchain[0], dict):
        callchain = _kernel_ips(callchain)
    c.add(name, cpu, ts, pid, field_names, (callchain,) + values, comm)


# -- perf's entry points -------------------------------------------------------------------------

def trace_begin():
    path, kallsyms = _perf_args()
    args = _options(sys.argv[1:])
    _state["args"] = args
    info, gaps = _trace_info(path, kallsyms)
    _state["collector"] = _Collector(info, AnalysisOptions(top=args.top), gaps)


_ZL = ("common_callchain", "node_id", "name", "count", "caller")


def kmem__mm_zone_lock_contended(event_name, context, common_cpu, common_secs, common_nsecs, common_pid,
                                 common_comm, common_callchain, node_id, name, count, caller, *_rest):
    _add("kmem:mm_zone_lock_contended", common_cpu, common_secs, common_nsecs, common_pid, common_comm,
         common_callchain, _ZL, (node_id, name, count, caller))


def kmem__mm_zone_locked(event_name, context, common_cpu, common_secs, common_nsecs, common_pid, common_comm,
                         common_callchain, node_id, name, count, contended, caller, wait_ns, *_rest):
    _add("kmem:mm_zone_locked", common_cpu, common_secs, common_nsecs, common_pid, common_comm, common_callchain,
         _ZL + ("contended", "wait_ns"), (node_id, name, count, caller, contended, wait_ns))


def kmem__mm_zone_lock_unlock(event_name, context, common_cpu, common_secs, common_nsecs, common_pid,
                              common_comm, common_callchain, node_id, name, count, caller, *_rest):
    _add("kmem:mm_zone_lock_unlock", common_cpu, common_secs, common_nsecs, common_pid, common_comm,
         common_callchain, _ZL, (node_id, name, count, caller))


def lock__contention_begin(event_name, context, common_cpu, common_secs, common_nsecs, common_pid, common_comm,
                           common_callchain, lock_addr, flags, *_rest):
    _add("lock:contention_begin", common_cpu, common_secs, common_nsecs, common_pid, common_comm,
         common_callchain, ("common_callchain", "lock_addr", "flags"), (lock_addr, flags))


def lock__contention_end(event_name, context, common_cpu, common_secs, common_nsecs, common_pid, common_comm,
                         common_callchain, lock_addr, ret, *_rest):
    _add("lock:contention_end", common_cpu, common_secs, common_nsecs, common_pid, common_comm,
         common_callchain, ("common_callchain", "lock_addr", "ret"), (lock_addr, ret))


_COMMON = ("common_cpu", "common_s", "common_ns", "common_pid", "common_comm", "common_callchain")


def trace_unhandled(event_name, context, event_fields_dict, *_perf_sample_dict):
    """Any other tracepoint: counted like ``zlperf report`` counts it, fields kept by name."""
    d = event_fields_dict
    system, _, event = event_name.partition("__")
    names = tuple(k for k in d if k not in _COMMON)
    _add(f"{system}:{event}", d["common_cpu"], d["common_s"], d["common_ns"], d["common_pid"], d["common_comm"],
         d.get("common_callchain", []), ("common_callchain",) + names, tuple(d[k] for k in names))


def trace_end():
    c = _state.get("collector")
    if c is None:
        return
    c.finish()
    from zlperf.report import build_document

    doc = build_document(c.result())
    args = _state["args"]
    for warning in doc["warnings"]:
        sys.stderr.write(f"zlperf: warning: {c.info.path}: {warning}\n")
    if args.json:
        import json

        sys.stdout.write(json.dumps(doc, indent=1) + "\n")
    else:
        from zlperf.render.text import render_text

        dims = [d.strip() for d in args.by.split(",") if d.strip()]
        sys.stdout.write(render_text(doc, by=dims, top=args.top))
    sys.stdout.flush()
