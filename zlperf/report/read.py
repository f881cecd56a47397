"""Reading ``zlperf.report/1`` documents back: bounded, checked field by field, into an AnalysisResult.

A document may come from anywhere (another host, a CI artefact, an attacker), so every field
``zlperf merge`` and ``zlperf diff`` use is checked for its type and range, and a bad one is one
line naming the file and the field. Distributions read back are :class:`HistogramStats`: the
document's own STATS, and its histograms (log-linear, and log2 for documents written before it) for merging.
"""

from __future__ import annotations

__all__ = ["MAX_DOCUMENT_BYTES", "HistogramStats", "load_document", "result_from_document"]

import json
from typing import Any, Literal, Optional, overload

import numpy as np

from zlperf.analysis.model import Capabilities
from zlperf.analysis.result import (
    AnalysisResult, BatchBucket, CallerKey, Counts, CpuKey, Group, Handoff, HolderCost, HolderOf, Holders, Missed,
    Source, StackCount, TaskKey, TimelineBins, WorstCase, Window, ZoneKey)
from zlperf.analysis.holders import by_holder
from zlperf.analysis.stats import LOGLINEAR_BITS, PERCENTILES
from zlperf.analysis.timeline import COLUMNS as TIMELINE_COLUMNS
from zlperf.errors import ZlperfError
from zlperf.report.document import SCHEMA
from zlperf.safeio import read_limited

#: A report document of a busy host with every task listed is a few MB; far larger is not one.
MAX_DOCUMENT_BYTES = 64 << 20
_MAX_INT = 1 << 63  # counts and nanoseconds fit int64 in the writer
_LOG2_BUCKETS = 65  # bucket 0 (value 0) and 64 bit lengths
_LOGLINEAR_BUCKETS = 128 + 64 * 57  # exact buckets below 2^7, then 64 per power of two up to 2^64
_MAX_SLICES = 1000
_MAX_BINS = 100_000


class HistogramStats:
    """A distribution known by its STATS dict (from a document): exact as written, mergeable by histogram."""

    __slots__ = ("stats",)

    def __init__(self, stats: dict):
        self.stats = stats

    @property
    def count(self) -> int:
        return int(self.stats["count"])

    @property
    def total(self) -> int:
        return int(self.stats["sum"])

    @property
    def hist_log2(self) -> list[int]:
        return list(self.stats["hist_log2"])

    @property
    def hist_loglinear(self) -> Optional[list[list[int]]]:
        """``[[bucket lower bound, count], ...]``, or None for a document written before zlperf had it."""
        hist = self.stats.get("hist_loglinear")
        return None if hist is None else [list(pair) for pair in hist]

    def summary(self) -> Optional[dict]:
        return dict(self.stats) if self.count else None


class _Checker:
    """Typed access to a parsed document that fails with one line naming the file and the field."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, where: str, problem: str) -> ZlperfError:
        return ZlperfError(f"{self.path}: {where}: {problem} (not a valid {SCHEMA} document; make one with "
                           "`zlperf report --json FILE`)")

    def obj(self, v: Any, where: str) -> dict:
        if not isinstance(v, dict):
            raise self.fail(where, f"expected an object, found {_kind(v)}")
        return v

    def lst(self, v: Any, where: str, limit: int = 10_000_000) -> list:
        if not isinstance(v, list):
            raise self.fail(where, f"expected a list, found {_kind(v)}")
        if len(v) > limit:
            raise self.fail(where, f"{len(v)} items, more than a report can hold ({limit})")
        return v

    @overload
    def int_(self, v: Any, where: str, *, null: Literal[False] = False, signed: bool = False) -> int: ...

    @overload
    def int_(self, v: Any, where: str, *, null: Literal[True], signed: bool = False) -> Optional[int]: ...

    def int_(self, v: Any, where: str, *, null: bool = False, signed: bool = False) -> Optional[int]:
        if v is None and null:
            return None
        if type(v) is not int or not (-_MAX_INT if signed else 0) <= v < _MAX_INT:
            raise self.fail(where, f"expected {'an' if signed else 'a non-negative'} integer below 2^63, "
                                   f"found {_kind(v)}")
        return v

    @overload
    def num(self, v: Any, where: str, *, null: Literal[False] = False) -> float: ...

    @overload
    def num(self, v: Any, where: str, *, null: Literal[True]) -> Optional[float]: ...

    def num(self, v: Any, where: str, *, null: bool = False) -> Optional[float]:
        if v is None and null:
            return None
        if type(v) not in (int, float) or v != v or v in (float("inf"), float("-inf")) or abs(v) >= 2.0 ** 64:
            raise self.fail(where, f"expected a finite number, found {_kind(v)}")
        return v

    @overload
    def str_(self, v: Any, where: str, *, null: Literal[False] = False) -> str: ...

    @overload
    def str_(self, v: Any, where: str, *, null: Literal[True]) -> Optional[str]: ...

    def str_(self, v: Any, where: str, *, null: bool = False) -> Optional[str]:
        if v is None and null:
            return None
        if not isinstance(v, str):
            raise self.fail(where, f"expected a string, found {_kind(v)}")
        return v

    def bool_(self, v: Any, where: str) -> bool:
        if not isinstance(v, bool):
            raise self.fail(where, f"expected true or false, found {_kind(v)}")
        return v

    def strings(self, v: Any, where: str) -> list[str]:
        return [self.str_(x, f"{where}[{i}]") for i, x in enumerate(self.lst(v, where))]

    def hexaddr(self, v: Any, where: str) -> Optional[int]:
        if v is None:
            return None
        s = self.str_(v, where)
        try:
            value = int(s, 16)
        except ValueError:
            raise self.fail(where, "expected a hex address such as 0xffff888000000000") from None
        if not 0 <= value < 1 << 64 or len(s) > 18:
            raise self.fail(where, "address does not fit 64 bits")
        return value

    def stats(self, v: Any, where: str) -> Optional[dict]:
        """A STATS dict (or null); every value checked."""
        if v is None:
            return None
        d = self.obj(v, where)
        out: dict[str, Any] = {"count": self.int_(d.get("count"), f"{where}.count"),
                               "sum": self.int_(d.get("sum"), f"{where}.sum")}
        for k in ("min", "max", *(label for label, _ in PERCENTILES)):
            out[k] = self.int_(d.get(k), f"{where}.{k}", null=True)
        out["mean"] = self.num(d.get("mean"), f"{where}.mean", null=True)
        hist = self.lst(d.get("hist_log2"), f"{where}.hist_log2", _LOG2_BUCKETS)
        out["hist_log2"] = [self.int_(x, f"{where}.hist_log2[{i}]") for i, x in enumerate(hist)]
        if d.get("hist_loglinear") is not None:
            out["hist_loglinear"] = self.loglinear(d["hist_loglinear"], f"{where}.hist_loglinear")
        out["percentiles_from"] = self.str_(d.get("percentiles_from", "exact"), f"{where}.percentiles_from")
        if out["count"]:
            order = ["min", *(label for label, _ in PERCENTILES), "max"]
            if any(out[k] is None for k in (*order, "mean")):
                raise self.fail(where, f"count {out['count']} but no min/max/mean/percentiles")
            if any(out[a] > out[b] for a, b in zip(order, order[1:])):
                raise self.fail(where, "min <= p50 <= p90 <= p99 <= p999 <= max does not hold")
            if sum(out["hist_log2"]) != out["count"]:
                raise self.fail(where, f"hist_log2 adds up to {sum(out['hist_log2'])}, not count {out['count']}")
        if "hist_loglinear" in out and sum(c for _, c in out["hist_loglinear"]) != out["count"]:
            raise self.fail(where, f"hist_loglinear adds up to {sum(c for _, c in out['hist_loglinear'])}, "
                                   f"not count {out['count']}")
        return out

    def loglinear(self, v: Any, where: str) -> list[list[int]]:
        """A log-linear histogram: [lower bound, count] pairs, bounds increasing and each a bucket's own."""
        pairs: list[list[int]] = []
        for i, pair in enumerate(self.lst(v, where, _LOGLINEAR_BUCKETS)):
            at = f"{where}[{i}]"
            if not isinstance(pair, list) or len(pair) != 2:
                raise self.fail(at, f"expected a [lower bound, count] pair, found {_kind(pair)}")
            low, count = self.int_(pair[0], f"{at}[0]"), self.int_(pair[1], f"{at}[1]")
            shift = max(low.bit_length() - LOGLINEAR_BITS, 0)  # type: ignore[union-attr]
            if (low >> shift) << shift != low:  # type: ignore[operator]
                raise self.fail(f"{at}[0]", f"{low} is not the lower bound of a log-linear bucket")
            if pairs and low <= pairs[-1][0]:
                raise self.fail(f"{at}[0]", "bucket bounds must increase")
            pairs.append([low, count])  # type: ignore[list-item]
        return pairs


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        text = repr(v)
        return f"the number {text if len(text) < 24 else text[:20] + '...'}"
    if isinstance(v, str):
        return f"the string {v[:30]!r}"
    return {"list": "a list", "dict": "an object"}.get(type(v).__name__, type(v).__name__)


def load_document(path: str) -> dict:
    """Read a ``zlperf report --json`` document (bounded), checking it is JSON with the right schema."""
    raw = read_limited(path, MAX_DOCUMENT_BYTES, f"{SCHEMA} document")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ZlperfError(f"{path}: offset {exc.start:#x}: not UTF-8 text, so not a {SCHEMA} document "
                          "(make one with `zlperf report --json FILE`)") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ZlperfError(f"{path}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg}); give `zlperf report --json` "
                          "output") from None
    except RecursionError:
        raise ZlperfError(f"{path}: JSON nested too deeply to be a {SCHEMA} document") from None
    except ValueError as exc:  # e.g. an integer of thousands of digits (int max str digits)
        raise ZlperfError(f"{path}: not a {SCHEMA} document ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ZlperfError(f"{path}: not a {SCHEMA} document (make one with `zlperf report --json FILE`)")
    return doc


def result_from_document(doc: dict, path: str, host: Optional[str] = None) -> AnalysisResult:
    """The :class:`AnalysisResult` a document was written from (distributions as :class:`HistogramStats`).

    ``host`` names the recording in merged results (its cpus, tasks and worst cases keep it).
    """
    c = _Checker(path)
    src = c.obj(doc.get("source"), "source")
    can = c.obj(doc.get("can_show"), "can_show")
    caps = Capabilities(
        abi=c.str_(doc.get("abi"), "abi"), profile=c.str_(doc.get("profile"), "profile"),
        contended_events=c.bool_(can.get("contended_events"), "can_show.contended_events"),
        acquisitions=c.bool_(can.get("acquisitions"), "can_show.acquisitions"),
        waits=c.bool_(can.get("waits"), "can_show.waits"), holds=c.bool_(can.get("holds"), "can_show.holds"),
        cannot=c.strings(doc.get("cannot_show", []), "cannot_show"), notes=c.strings(doc.get("notes", []), "notes"),
        wait_is=c.str_(doc.get("wait_is", ""), "wait_is") or "")
    # Whether acquisitions say if they were contended: the writer leaves "contended" null when not.
    caps.contended_flag = c.obj(doc.get("totals"), "totals").get("contended") is not None or not caps.acquisitions
    duration = c.int_(doc.get("duration_ns"), "duration_ns")
    cpus = c.int_(src.get("cpus") or 0, "source.cpus")
    win = c.obj(doc.get("window"), "window")
    window = Window(c.int_(win.get("first_ts_ns"), "window.first_ts_ns"),
                    c.int_(win.get("last_ts_ns"), "window.last_ts_ns"),
                    c.int_(win.get("since_ns"), "window.since_ns", null=True),
                    c.int_(win.get("until_ns"), "window.until_ns", null=True),
                    c.str_(win.get("zone"), "window.zone", null=True))
    events = {c.str_(k, "events"): c.int_(v, f"events.{k}") for k, v in c.obj(doc.get("events"), "events").items()}
    by_cpu = {str(k): c.int_(v, f"missed_by_cpu.{k}") for k, v in c.obj(doc.get("missed_by_cpu", {}), "missed_by_cpu").items()}
    missed = Missed(events=c.int_(doc.get("missed_events"), "missed_events"),
                    unknown_gaps=c.int_(doc.get("missed_events_unknown_gaps", 0), "missed_events_unknown_gaps"),
                    by_cpu=by_cpu,
                    kernel_overrun=c.int_(doc.get("kernel_overrun", 0), "kernel_overrun"),
                    kernel_dropped_events=c.int_(doc.get("kernel_dropped_events", 0), "kernel_dropped_events"))

    def group(e: Any, where: str, key: Any) -> Group:
        e = c.obj(e, where)
        counts = Counts(*(c.int_(e.get(k) or 0, f"{where}.{k}") for k in (
            "contended_events", "acquisitions", "contended", "unmatched_unlocks", "unreleased", "broken_by_missed")))
        wait, hold = c.stats(e.get("wait_ns"), f"{where}.wait_ns"), c.stats(e.get("hold_ns"), f"{where}.hold_ns")
        return Group(key=key, counts=counts, wait=HistogramStats(wait or _EMPTY), hold=HistogramStats(hold or _EMPTY),
                     slices=_slices(c, e.get("slices"), f"{where}.slices"),
                     hosts=c.int_(e.get("hosts", 1), f"{where}.hosts"))

    def groups(name: str, make_key) -> list[Group]:
        out = []
        for i, e in enumerate(c.lst(doc.get(name, []), name)):
            where = f"{name}[{i}]"
            out.append(group(e, where, make_key(c.obj(e, where), where)))
        return out

    def zone_key(e: dict, where: str) -> ZoneKey:
        return ZoneKey(label=c.str_(e.get("label"), f"{where}.label"),
                       node=c.int_(e.get("node"), f"{where}.node", null=True, signed=True),
                       name=c.str_(e.get("zone"), f"{where}.zone", null=True),
                       lock_addr=c.hexaddr(e.get("lock_addr"), f"{where}.lock_addr"),
                       zone_ptr=c.hexaddr(e.get("zone_ptr"), f"{where}.zone_ptr"))

    def caller_key(e: dict, where: str) -> CallerKey:
        return CallerKey(symbol=c.str_(e.get("caller"), f"{where}.caller"),
                         addr=c.hexaddr(e.get("addr"), f"{where}.addr"),
                         role=c.str_(e.get("role", "lock"), f"{where}.role"))

    def cpu_key(e: dict, where: str) -> CpuKey:
        return CpuKey(cpu=c.int_(e.get("cpu"), f"{where}.cpu"),
                      host=c.str_(e.get("host", host), f"{where}.host", null=True))

    def task_key(e: dict, where: str) -> TaskKey:
        return TaskKey(pid=c.int_(e.get("pid"), f"{where}.pid", signed=True),
                       comm=c.str_(e.get("comm"), f"{where}.comm"),
                       host=c.str_(e.get("host", host), f"{where}.host", null=True))

    def holder_of(v: Any, where: str) -> Optional[HolderOf]:
        if v is None:
            return None
        d = c.obj(v, where)
        return HolderOf(caller=c.str_(d.get("caller"), f"{where}.caller"),
                        pid=c.int_(d.get("pid"), f"{where}.pid", null=True, signed=True),
                        comm=c.str_(d.get("comm"), f"{where}.comm", null=True),
                        cpu=c.int_(d.get("cpu"), f"{where}.cpu", null=True),
                        release_ts_ns=c.int_(d.get("release_ts_ns"), f"{where}.release_ts_ns", null=True),
                        hold_ns=c.int_(d.get("hold_ns"), f"{where}.hold_ns", null=True),
                        count=c.int_(d.get("count"), f"{where}.count", null=True, signed=True),
                        waited=c.bool_(d.get("waited", False), f"{where}.waited"))

    def worst(name: str, col: str) -> list[WorstCase]:
        out = []
        for i, w in enumerate(c.lst(doc.get(name, []), name)):
            where = f"{name}[{i}]"
            w = c.obj(w, where)
            out.append(WorstCase(
                value_ns=c.int_(w.get(col), f"{where}.{col}"), ts_ns=c.int_(w.get("ts_ns"), f"{where}.ts_ns"),
                cpu=c.int_(w.get("cpu"), f"{where}.cpu"), pid=c.int_(w.get("pid"), f"{where}.pid", signed=True),
                comm=c.str_(w.get("comm"), f"{where}.comm"), zone=c.str_(w.get("zone"), f"{where}.zone", null=True),
                caller=c.str_(w.get("caller"), f"{where}.caller"),
                count=c.int_(w.get("count"), f"{where}.count", null=True, signed=True),
                host=c.str_(w.get("host", host), f"{where}.host", null=True),
                holder=holder_of(w.get("holder"), f"{where}.holder")))
        return out

    batches = []
    for i, b in enumerate(c.lst(doc.get("hold_by_batch", []), "hold_by_batch", 64)):
        where = f"hold_by_batch[{i}]"
        b = c.obj(b, where)
        batches.append(BatchBucket(c.int_(b.get("batch_min"), f"{where}.batch_min"),
                                   c.int_(b.get("batch_max"), f"{where}.batch_max"),
                                   HistogramStats(c.stats(b.get("hold_ns"), f"{where}.hold_ns") or _EMPTY)))
    stacks = []
    for i, s in enumerate(c.lst(doc.get("contended_stacks", []), "contended_stacks")):
        where = f"contended_stacks[{i}]"
        s = c.obj(s, where)
        stacks.append(StackCount(tuple(c.strings(s.get("frames"), f"{where}.frames")),
                                 c.int_(s.get("count"), f"{where}.count")))
    notes = {k: c.str_(doc[k], k) for k in ("duration_note", "percentiles_note", "timeline_note") if k in doc}
    merged_from = [c.obj(m, f"merged_from[{i}]") for i, m in enumerate(c.lst(doc.get("merged_from", []), "merged_from"))]
    return AnalysisResult(
        source=Source(path=c.str_(src.get("path"), "source.path"), format=c.str_(src.get("format"), "source.format"),
                      clock=c.str_(src.get("clock"), "source.clock", null=True), cpus=cpus,
                      kallsyms=c.str_(src.get("kallsyms"), "source.kallsyms", null=True)),
        capabilities=caps, window=window, duration_ns=duration,
        cpu_time_ns=c.int_(doc.get("cpu_time_ns", duration * cpus), "cpu_time_ns"),
        events=events, missed=missed,
        totals=group(doc.get("totals"), "totals", None),
        zones=groups("zones", zone_key), callers=groups("callers", caller_key), cpus=groups("cpus", cpu_key),
        tasks=groups("tasks", task_key), hold_by_batch=batches, timeline=_timeline(c, doc.get("timeline")),
        top_waits=worst("top_waits", "wait_ns"), top_holds=worst("top_holds", "hold_ns"), stacks=stacks,
        warnings=c.strings(doc.get("warnings", []), "warnings"), merged_from=merged_from, merge_notes=notes,
        holders=_holders(c, doc.get("holders"), doc.get("handoffs", []), host))


_EMPTY: dict[str, Any] = {"count": 0, "sum": 0, "min": None, "max": None, "mean": None, "p50": None, "p90": None,
                          "p99": None, "p999": None, "hist_log2": [], "hist_loglinear": [], "percentiles_from": "exact"}


def _holders(c: _Checker, v: Any, handoffs: Any, host: Optional[str]) -> Optional[Holders]:
    if v is None:
        return None
    d = c.obj(v, "holders")
    num = {k: c.int_(d.get(k, 0), f"holders.{k}") for k in (
        "waits", "wait_ns_sum", "not_traced", "not_traced_wait_ns_sum", "no_acquisition_seen", "handed_off",
        "uncontended")}
    pairs = []
    for i, x in enumerate(c.lst(handoffs, "handoffs")):
        where = f"handoffs[{i}]"
        x = c.obj(x, where)
        pairs.append(Handoff(c.str_(x.get("waiter_caller"), f"{where}.waiter_caller"),
                             c.str_(x.get("holder_caller"), f"{where}.holder_caller"),
                             c.int_(x.get("waits"), f"{where}.waits"),
                             c.int_(x.get("wait_ns_sum"), f"{where}.wait_ns_sum")))
    top = []
    for i, x in enumerate(c.lst(d.get("top", []), "holders.top")):
        where = f"holders.top[{i}]"
        x = c.obj(x, where)
        top.append(HolderCost(c.str_(x.get("caller"), f"{where}.caller"),
                              c.int_(x.get("pid"), f"{where}.pid", signed=True),
                              c.str_(x.get("comm"), f"{where}.comm"), c.int_(x.get("cpu"), f"{where}.cpu"),
                              c.int_(x.get("waits"), f"{where}.waits"),
                              c.int_(x.get("wait_ns_sum"), f"{where}.wait_ns_sum"),
                              c.str_(x.get("host", host), f"{where}.host", null=True)))
    convoys = {}
    for i, x in enumerate(c.lst(d.get("convoys", []), "holders.convoys", 1_000_000)):
        x = c.obj(x, f"holders.convoys[{i}]")
        convoys[c.int_(x.get("length"), f"holders.convoys[{i}].length")] = c.int_(
            x.get("chains"), f"holders.convoys[{i}].chains")
    return Holders(handoffs=pairs, by_caller=by_holder(pairs), top=top, convoys=convoys, **num)


def _slices(c: _Checker, v: Any, where: str) -> Optional[np.ndarray]:
    if v is None:
        return None
    d = c.obj(v, where)
    cols = []
    for col in TIMELINE_COLUMNS:
        values = c.lst(d.get(col), f"{where}.{col}", _MAX_SLICES)
        cols.append([c.num(x, f"{where}.{col}[{i}]") for i, x in enumerate(values)])
    if len({len(col) for col in cols}) != 1:
        raise c.fail(where, "columns of different lengths")
    return np.array(cols, dtype=np.float64).T.reshape(len(cols[0]), len(cols))


def _timeline(c: _Checker, v: Any) -> TimelineBins:
    d = c.obj(v, "timeline")
    bins = c.lst(d.get("bins", []), "timeline.bins", _MAX_BINS)
    values = np.zeros((len(bins), len(TIMELINE_COLUMNS)))
    heat: Optional[list[list[int]]] = []  # the latency heatmap, when every bin has it
    for i, b in enumerate(bins):
        b = c.obj(b, f"timeline.bins[{i}]")
        for j, col in enumerate(TIMELINE_COLUMNS):
            values[i, j] = c.num(b.get(col, 0), f"timeline.bins[{i}].{col}")
        if heat is not None and "wait_hist_log2" in b:
            where = f"timeline.bins[{i}].wait_hist_log2"
            heat.append([c.int_(x, f"{where}[{k}]") for k, x in
                         enumerate(c.lst(b["wait_hist_log2"], where, _LOG2_BUCKETS))])
        else:
            heat = None  # documents written before the heatmap existed
    wait_log2 = None
    if heat is not None:
        wait_log2 = np.zeros((len(heat), max((len(h) for h in heat), default=0)), dtype=np.int64)
        for i, h in enumerate(heat):
            wait_log2[i, :len(h)] = h
    return TimelineBins(start_ns=c.int_(d.get("start_ns", 0), "timeline.start_ns"),
                        bin_ns=c.int_(d.get("bin_ns", 0), "timeline.bin_ns"),
                        columns=TIMELINE_COLUMNS, values=values, wait_log2=wait_log2)
