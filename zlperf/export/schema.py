"""The Parquet tables ``zlperf export --parquet`` writes and ``zlperf fleet`` reads: names, types, meaning.

Plain data (no pyarrow here), so the writer, the fleet's checks and docs/schema.md's test share one list.
Changing a column's name, type or meaning is a new :data:`SCHEMA_VERSION`.
"""

from __future__ import annotations

__all__ = ["SCHEMA_VERSION", "METADATA_KEY", "Column", "TABLES", "EVENT_TABLES", "NOT_TRACED", "NO_ACQUISITION",
           "PAIRING_KINDS"]

from dataclasses import dataclass

from zlperf.analysis.holders import NO_ACQUISITION, NOT_TRACED

#: Written in every file's key-value metadata (under :data:`METADATA_KEY`) and in the run row.
SCHEMA_VERSION = "zlperf.parquet/1"
METADATA_KEY = "zlperf.schema"
#: ``pairing.kind`` values: the report's pairing anomaly counters.
PAIRING_KINDS = ("unmatched_unlock", "unreleased", "broken_by_missed")


@dataclass(frozen=True)
class Column:
    """One column: Arrow type name (``string``, ``int64``, ``int32``, ``bool``, ``list<string>``,
    ``list<struct<name: string, count: int64>>``), whether it may be null, and what it holds."""

    name: str
    type: str
    nullable: bool
    doc: str


def _c(name: str, type_: str, doc: str, nullable: bool = False) -> Column:
    return Column(name, type_, nullable, doc)


_EVENT = (
    _c("host", "string", "the host name given to zlperf export --host (also the folder's host=NAME)"),
    _c("ts_ns", "int64", "trace-clock timestamp, ns: the acquisition (its wait ended then, its hold began); "
                         "the contended event; a stock wait's end (it began at ts_ns - wait_ns)"),
    _c("cpu", "int32", "CPU the event was recorded on"),
    _c("pid", "int32", "task (thread) id"),
    _c("comm", "string", "the task's name as the recording last knew it (what zlperf report shows)"),
)
_ZONE = (
    _c("zone", "string", "zone label as the report prints it: 1:Normal, lock@0x..., zone@0x..."),
    _c("node", "int32", "NUMA node of the zone, when known", True),
    _c("zone_name", "string", "zone name (Normal, DMA32, ...), when known", True),
    _c("lock_addr", "string", "&zone->lock in hex (stock kernels' lock:contention_* events)", True),
    _c("zone_ptr", "string", "struct zone pointer in hex (zone_lock:* events)", True),
)
_CALLER = (
    _c("caller", "string", "the locked caller, func+0xoff (hex without symbols)"),
    _c("caller_addr", "string", "its address in hex; 0x0 when the ABI found no caller"),
)

TABLES: dict[str, tuple[Column, ...]] = {
    "acquisitions": _EVENT + _ZONE + _CALLER + (
        _c("seq", "int64", "the event's position in the recording's stream (unique within a host)"),
        _c("contended", "bool", "the acquisition spun first; null where the ABI does not say (zone_lock:*)", True),
        _c("wait_ns", "int64", "how long it waited: contended acquisitions' spin (kmem), start -> acquire "
                               "(zone_lock:*); null when it did not wait or the wait was not traced", True),
        _c("hold_ns", "int64", "acquisition -> its release on the same CPU; null when not paired", True),
        _c("batch", "int32", "pages in the locked event's count (kmem), null otherwise", True),
        _c("holder_caller", "string", "waits: the holder's locked caller, or the literals (not traced) / "
                                      "(no acquisition seen); null for rows that are not attributed waits", True),
        _c("holder_pid", "int32", "waits: the releasing task (null when not traced)", True),
        _c("holder_comm", "string", "waits: its name", True),
        _c("holder_cpu", "int32", "waits: the CPU that released the lock", True),
        _c("holder_release_ts_ns", "int64", "waits: when the holder released the lock", True),
        _c("holder_hold_ns", "int64", "waits: how long the holder held it (null when its acquisition was "
                                      "not seen)", True),
        _c("holder_batch", "int32", "waits: the holder's batch size", True),
        _c("holder_waited", "bool", "waits: the holder had waited itself (a hand-off)", True),
        _c("convoy_length", "int32", "waits: back-to-back contended acquisitions in the chain ending here", True),
        _c("convoy_end", "bool", "waits: nobody waited behind this acquisition (a convoy ends here)", True),
    ),
    "contended": _EVENT + _ZONE + _CALLER + (
        _c("stack_id", "int32", "the contended event's kernel stack (stacks table), null when none", True),
    ),
    "stock_waits": _EVENT + _ZONE + _CALLER + (
        _c("wait_ns", "int64", "contention_begin -> contention_end on the same CPU and lock (ts_ns is the end)"),
        _c("stack_id", "int32", "the begin's kernel stack (stacks table), null when none", True),
    ),
    "pairing": _EVENT + _ZONE + _CALLER + (
        _c("seq", "int64", "the event's position in the recording's stream"),
        _c("kind", "string", "unmatched_unlock (a release with no acquisition before it: its caller is the "
                             "unlock's), unreleased (an acquisition never released), broken_by_missed (a pair "
                             "side next to a ring-buffer gap)"),
    ),
    "stacks": (
        _c("host", "string", "as above"),
        _c("stack_id", "int32", "referenced by contended.stack_id and stock_waits.stack_id"),
        _c("frames", "list<string>", "kernel frames, innermost first, func+0xoff"),
        _c("addrs", "list<string>", "the same frames' addresses in hex"),
    ),
    "run": (
        _c("host", "string", "as above"),
        _c("schema_version", "string", f"{SCHEMA_VERSION}"),
        _c("zlperf_version", "string", "the zlperf that exported"),
        _c("kernel_release", "string", "the recording kernel's release (from uname)", True),
        _c("uname", "string", "the recording host's uname as the file stores it", True),
        _c("recording", "string", "the recording's path as given to zlperf export"),
        _c("recording_sha256", "string", "sha256 of the recording file (null for a pipe)", True),
        _c("recording_bytes", "int64", "its size", True),
        _c("format", "string", "trace.dat v7 (zstd), perf.data, ..."),
        _c("clock", "string", "trace clock", True),
        _c("cpus", "int32", "CPUs of the recording"),
        _c("kallsyms", "string", "where symbols came from", True),
        _c("abi_key", "string", "kmem, series or stock: which events the tables come from"),
        _c("abi", "string", "the ABI as the report names it"),
        _c("profile", "string", "minimal, wait-time, hold-time, stock, zone-lock-series, ..."),
        _c("can_contended_events", "bool", "the recording has contended events"),
        _c("can_acquisitions", "bool", "... every acquisition"),
        _c("can_waits", "bool", "... wait times"),
        _c("can_holds", "bool", "... hold times"),
        _c("can_holders", "bool", "... who held the lock behind each wait"),
        _c("contended_flag", "bool", "acquisitions say whether they were contended"),
        _c("wait_is", "string", "what a wait is in this ABI"),
        _c("cannot_show", "list<string>", "what the recording cannot show"),
        _c("notes", "list<string>", "what was inferred or left out"),
        _c("warnings", "list<string>", "what was lost or assumed while reading"),
        _c("first_ts_ns", "int64", "first event of the recording"),
        _c("last_ts_ns", "int64", "last event"),
        _c("duration_ns", "int64", "last - first"),
        _c("cpu_time_ns", "int64", "duration x CPUs"),
        _c("events", "list<struct<name: string, count: int64>>", "event name -> count"),
        _c("missed_events", "int64", "events the kernel reported lost"),
        _c("missed_unknown_gaps", "int64", "gaps of unknown size"),
        _c("missed_by_cpu", "list<struct<name: string, count: int64>>", "CPU -> events lost"),
        _c("kernel_overrun", "int64", "the kernel's overrun counters at the end of recording"),
        _c("kernel_dropped_events", "int64", "the kernel's dropped-events counters"),
        _c("timeline_bin_ns", "int64", "the finest timeline bin the analysis started from"),
        _c("top", "int32", "worst cases and costliest holders kept per report"),
    ),
}

#: Tables of events (a row per event), which the fleet engine reads; run and stacks are read directly.
EVENT_TABLES = ("acquisitions", "contended", "stock_waits", "pairing")
