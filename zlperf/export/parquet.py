"""``zlperf export FILE --parquet DIR [--host NAME]``: one recording as Parquet tables under ``DIR/host=NAME/``.

One pass: the analysis runs as for ``zlperf report`` and hands every row to the spool, then the tables are
written with names, strings and each wait's holder. Tables and columns: docs/schema.md (zlperf.parquet/1).
"""

from __future__ import annotations

__all__ = ["export_parquet", "export_recording", "arrow_schema"]

import argparse
import hashlib
import os
import re
import shutil
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from zlperf import __version__
from zlperf.analysis import AnalysisOptions, AnalysisResult, Analyzer
from zlperf.analysis.core import caller_symbolizer
from zlperf.analysis.holders import Attributed
from zlperf.analysis.model import Zone
from zlperf.errors import ZlperfError
from zlperf.export.parquet_spool import Lane, Spool
from zlperf.export.schema import (
    EVENT_TABLES, METADATA_KEY, NO_ACQUISITION, NOT_TRACED, PAIRING_KINDS, SCHEMA_VERSION, TABLES)
from zlperf.extras import require

_BATCH = 1 << 16  # rows per row group of the final tables (and per step of their assembly)
_HOST = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:@+-]{0,127}")


def export_parquet(path: str, out_dir: str, args: argparse.Namespace) -> int:
    """The command: export ``path`` under ``out_dir/host=NAME`` and print what was written."""
    from zlperf.commands.report import analysis_options

    require("pyarrow", "parquet")
    host = args.host or socket.gethostname()
    counts = export_recording(path, out_dir, host, analysis_options(args), reader=getattr(args, "reader", "auto"),
                              kallsyms=getattr(args, "kallsyms", None))
    rows = ", ".join(f"{n} {name}" for name, n in counts.items())
    print(f"zlperf: wrote {Path(out_dir) / ('host=' + host)} ({SCHEMA_VERSION}): {rows}")
    return 0


def export_recording(path: str, out_dir: str, host: str, options: Optional[AnalysisOptions] = None, *,
                     reader: str = "auto", kallsyms: Optional[str] = None) -> dict[str, int]:
    """Write the tables of the recording ``path`` to ``out_dir/host=host`` (replacing an earlier export of
    that host); returns the rows written per table."""
    from zlperf.readers import open_trace

    require("pyarrow", "parquet")
    dest = _destination(out_dir, host)
    tmp = Path(tempfile.mkdtemp(prefix=f".host={host}.", suffix=".tmp", dir=dest.parent))
    try:
        with open_trace(path, reader=reader, kallsyms=kallsyms) as trace:
            info = trace.info
            spool = Spool(tmp)
            analyzer = Analyzer(info, options, observer=spool)
            for chunk in trace.chunks():
                analyzer.feed(chunk)
        result = analyzer.result()
        lane = spool.close(analyzer.abi)
        abi, attributed = analyzer.abi, analyzer.attributed
        names = _Names(host, analyzer.zones.zones, caller_symbolizer(info), analyzer.comms)
        del analyzer, spool  # the aggregation's tables are no longer needed: free them before writing
        _release_freed_memory()
        counts = {name: _write_events(tmp, name, lane, names, result, attributed) for name in EVENT_TABLES}
        _write_table(tmp / "stacks.parquet", "stacks", _stacks_columns(host, lane, names.sym))
        warnings = list(result.warnings)
        if lane.clamped:
            warnings.append(f"{lane.clamped} wait or hold times of 2^63 ns or more (damaged records) were "
                            "written as 2^63-1 ns")
        _write_table(tmp / "run.parquet", "run", _run_columns(host, path, info, result, abi,
                                                                options or AnalysisOptions(), warnings))
        for raw in tmp.glob("*.bin"):
            raw.unlink()
        _place(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts


def _release_freed_memory() -> None:
    """Hand the heap pages the analysis freed back to the system (glibc keeps them otherwise), so writing
    the tables does not add its own peak on top of the analysis'. A no-op where malloc_trim is missing."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


# -- the destination -----------------------------------------------------------------------------------------

def _destination(out_dir: str, host: str) -> Path:
    """``out_dir/host=NAME``, checked before any work: no symlinks on the way, ``out_dir`` created if
    missing, an existing host folder replaced only if it is an earlier export."""
    if not _HOST.fullmatch(host):
        raise ZlperfError(f"--host {host!r}: use letters, digits and _ . : @ + - (at most 128, not starting "
                          "with . or -): it names a folder")
    root = Path(out_dir)
    if root.is_symlink():
        raise ZlperfError(f"{root}: is a symbolic link; zlperf does not write Parquet tables through links "
                          "(give the real folder)")
    if root.exists() and not root.is_dir():
        raise ZlperfError(f"{root}: exists and is not a folder (give a folder for the Parquet tables)")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ZlperfError(f"{root}: cannot create the folder ({exc.strerror})") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise ZlperfError(f"{root}: cannot write into it (permission denied or read-only)")
    dest = root / f"host={host}"
    if dest.is_symlink():
        raise ZlperfError(f"{dest}: is a symbolic link; zlperf does not write through links (remove it)")
    if dest.exists() and not (dest.is_dir() and (dest / "run.parquet").is_file()):
        raise ZlperfError(f"{dest}: exists and is not an earlier zlperf export (move it away or choose another "
                          "--host)")
    return dest


def _place(tmp: Path, dest: Path) -> None:
    """Rename the finished folder into place; an earlier export of the host is removed after."""
    if dest.is_symlink():
        raise ZlperfError(f"{dest}: became a symbolic link while exporting; not replaced")
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
        os.replace(dest, old / dest.name)
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# -- columns -----------------------------------------------------------------------------------------------------

def arrow_schema(table: str) -> Any:
    """The Arrow schema of ``table`` (event tables' strings dictionary-encoded), with the schema version."""
    pa = require("pyarrow", "parquet")
    struct = pa.struct([("name", pa.string()), ("count", pa.int64())])
    string = pa.dictionary(pa.int32(), pa.string()) if table in EVENT_TABLES else pa.string()
    types = {"string": string, "int64": pa.int64(), "int32": pa.int32(), "bool": pa.bool_(),
             "list<string>": pa.list_(pa.string()), "list<struct<name: string, count: int64>>": pa.list_(struct)}
    return pa.schema([pa.field(c.name, types[c.type], nullable=c.nullable) for c in TABLES[table]],
                     metadata={METADATA_KEY: SCHEMA_VERSION})


def _writer_options(table: str) -> dict[str, Any]:
    """zstd, with Parquet dictionary pages for the string columns only (numbers such as timestamps have
    too many distinct values: trying a dictionary for them costs time and saves nothing)."""
    return {"compression": "zstd", "use_dictionary": [c.name for c in TABLES[table] if c.type == "string"]}


def _write_table(path: Path, table: str, columns: dict[str, Any]) -> None:
    pa = require("pyarrow", "parquet")
    pq = require("pyarrow.parquet", "parquet")
    schema = arrow_schema(table)
    pq.write_table(pa.Table.from_pydict(columns, schema=schema), str(path), **_writer_options(table))


class _Names:
    """Strings of the rows: host, comm, zone and caller columns as dictionary arrays (symbolized once)."""

    def __init__(self, host: str, zones: list[Zone], sym: Callable[[int], str], comms: dict[int, str]):
        pa = require("pyarrow", "parquet")
        self.pa, self.host, self.sym, self.comms = pa, host, sym, comms
        self._callers: dict[int, tuple[str, str]] = {}
        unknown = Zone()  # rows without a zone (none are written today; "?" if one ever is)
        self.zones = list(zones) + [unknown]
        self.zone_node = pa.array([z.node for z in self.zones], pa.int32())
        self.zone_text = {
            "zone": [z.label for z in self.zones], "zone_name": [z.name for z in self.zones],
            "lock_addr": [_hex(z.lock_addr) for z in self.zones], "zone_ptr": [_hex(z.zone_ptr) for z in self.zones]}
        self.zone_null = {k: np.array([v is None for v in vs]) for k, vs in self.zone_text.items()}

    def dictionary(self, values: list, indices: np.ndarray, mask: Optional[np.ndarray] = None) -> Any:
        pa = self.pa
        idx = pa.array(indices.astype(np.int32), mask=mask)
        return pa.DictionaryArray.from_arrays(idx, pa.array(values, pa.string()))

    def event_columns(self, raw: dict[str, np.ndarray]) -> dict[str, Any]:
        """host, ts_ns, cpu, pid, comm, zone columns and caller columns of raw rows."""
        pa = self.pa
        n = len(raw["ts"])
        zone = raw["zone"].astype(np.int64)
        zone = np.where((zone >= 0) & (zone < len(self.zones) - 1), zone, len(self.zones) - 1)
        out: dict[str, Any] = {
            "host": self.dictionary([self.host], np.zeros(n, np.int32)),
            "ts_ns": raw["ts"], "cpu": raw["cpu"], "pid": raw["pid"], "comm": self.comm(raw["pid"]),
            "node": self.zone_node.take(pa.array(zone)),
        }
        for col, values in self.zone_text.items():
            out[col] = self.dictionary([v or "" for v in values], zone, self.zone_null[col][zone])
        out["caller"], out["caller_addr"] = self.callers(raw["caller"])
        return out

    def comm(self, pids: np.ndarray, mask: Optional[np.ndarray] = None) -> Any:
        uniq, inverse = np.unique(pids, return_inverse=True)
        return self.dictionary([self.comms.get(int(p), "<...>") for p in uniq], inverse.ravel(), mask)

    def callers(self, addrs: np.ndarray) -> tuple[Any, Any]:
        uniq, inverse = np.unique(addrs, return_inverse=True)
        names = [self._caller(int(a)) for a in uniq]
        inverse = inverse.ravel()
        return self.dictionary([s for s, _ in names], inverse), self.dictionary([h for _, h in names], inverse)

    def _caller(self, addr: int) -> tuple[str, str]:
        got = self._callers.get(addr)
        if got is None:
            got = self._callers[addr] = (self.sym(addr), f"{addr:#x}")
        return got


def _hex(v: Optional[int]) -> Optional[str]:
    return None if v is None else f"{v:#x}"


def _write_events(tmp: Path, table: str, lane: Lane, names: _Names, result: AnalysisResult,
                  attributed: Optional[Attributed]) -> int:
    """The final ``table`` from its raw rows: names and strings added, holders joined (acquisitions)."""
    pa = require("pyarrow", "parquet")
    pq = require("pyarrow.parquet", "parquet")
    schema = arrow_schema(table)
    holders = _Holders(attributed, names) if table == "acquisitions" else None
    rows = 0
    with pq.ParquetWriter(str(tmp / f"{table}.parquet"), schema, **_writer_options(table)) as writer:
        for raw in lane.tables[table].slices(_BATCH):
            cols = names.event_columns(raw)
            if table == "acquisitions":
                cols.update(_acquisition_columns(raw, lane, result, holders))  # type: ignore[arg-type]
            elif table == "pairing":
                cols["seq"] = raw["seq"]
                cols["kind"] = names.dictionary(list(PAIRING_KINDS), raw["kind"])
            else:
                if table == "stock_waits":
                    cols["wait_ns"] = raw["wait_ns"]
                cols["stack_id"] = pa.array(raw["stack_id"], mask=raw["stack_id"] < 0)
            writer.write_table(pa.Table.from_pydict(cols, schema=schema))
            rows += len(raw["ts"])
        if not rows:
            writer.write_table(schema.empty_table())
    return rows


def _acquisition_columns(raw: dict[str, np.ndarray], lane: Lane, result: AnalysisResult,
                         holders: "_Holders") -> dict[str, Any]:
    pa = require("pyarrow", "parquet")
    caps = result.capabilities
    out: dict[str, Any] = {
        "seq": raw["seq"],
        "contended": pa.array(raw["contended"] != 0, mask=np.full(len(raw["seq"]), not caps.contended_flag)),
        "wait_ns": pa.array(raw["wait_ns"], mask=raw["wait_ns"] < 0),
        "hold_ns": pa.array(raw["hold_ns"], mask=raw["hold_ns"] < 0),
        "batch": pa.array(raw["batch"], mask=np.full(len(raw["seq"]), not lane.has_batch)),
    }
    out.update(holders.columns(raw["seq"]))
    return out


class _Holders:
    """Each attributed wait's holder (``Analyzer.attributed``), looked up by the acquisition's seq."""

    def __init__(self, att: Optional[Attributed], names: _Names):
        self.att, self.names = att, names
        if att is not None and len(att.traced):
            self.order = np.argsort(att.waits["seq"], kind="stable")
            self.sorted_seq = att.waits["seq"][self.order]
            parent = att.parent
            self.is_parent = np.zeros(len(parent), dtype=bool)
            self.is_parent[parent[parent >= 0]] = True

    def columns(self, seq: np.ndarray) -> dict[str, Any]:
        pa, n = self.names.pa, len(seq)
        att = self.att
        if att is None or not len(att.traced):
            return {c.name: pa.nulls(n, _arrow_type(c.name)) for c in TABLES["acquisitions"]
                    if c.name.startswith(("holder_", "convoy_"))}
        pos = np.minimum(np.searchsorted(self.sorted_seq, seq), len(self.sorted_seq) - 1)
        found = self.sorted_seq[pos] == seq
        i = self.order[pos]
        traced = found & att.traced[i]
        h = {k: v[i] for k, v in att.holder.items()}
        seen = traced & (h["holder_seq"] >= 0)
        # holder caller: 0 not traced, 1 no acquisition seen, 2+ the caller addresses
        addrs, inverse = np.unique(np.where(seen, h["holder_caller"], 0), return_inverse=True)
        code = np.where(~traced, 0, np.where(seen, inverse.ravel() + 2, 1))
        callers = [NOT_TRACED, NO_ACQUISITION] + [self.names._caller(int(a))[0] for a in addrs]
        untraced = ~traced
        return {
            "holder_caller": self.names.dictionary(callers, code, ~found),
            "holder_pid": pa.array(h["pid"], mask=untraced),
            "holder_comm": self.names.comm(h["pid"], untraced),
            "holder_cpu": pa.array(h["cpu"], mask=untraced),
            "holder_release_ts_ns": pa.array(h["ts"].astype(np.int64), mask=untraced),
            "holder_hold_ns": pa.array(h["hold_ns"], mask=~traced | (h["hold_ns"] < 0)),
            "holder_batch": pa.array(h["count"], mask=~seen | (h["count"] < 0)),
            "holder_waited": pa.array(h["holder_contended"], mask=untraced),
            "convoy_length": pa.array(att.chain[i].astype(np.int32), mask=~found),
            "convoy_end": pa.array(~self.is_parent[i], mask=~found),
        }


def _arrow_type(column: str) -> Any:
    return arrow_schema("acquisitions").field(column).type


def _stacks_columns(host: str, lane: Lane, sym: Callable[[int], str]) -> dict[str, list]:
    frames = [[sym(int(a)) for a in f] for f in lane.stacks]
    return {"host": [host] * len(frames), "stack_id": list(range(len(frames))), "frames": frames,
            "addrs": [[f"{int(a):#x}" for a in f] for f in lane.stacks]}


def _sha256(path: str) -> tuple[Optional[str], Optional[int]]:
    """sha256 and size of a regular file (None for pipes and the like)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None, None
        digest = hashlib.sha256()
        size = 0
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
                size += len(block)
        return digest.hexdigest(), size
    except OSError:
        return None, None


def _run_columns(host: str, path: str, info: Any, r: AnalysisResult, abi: Optional[str],
                 options: AnalysisOptions, warnings: list[str]) -> dict[str, list]:
    caps = r.capabilities
    sha, size = _sha256(path)
    uname = info.uname
    parts = uname.split() if uname else []
    row = {
        "host": host, "schema_version": SCHEMA_VERSION, "zlperf_version": __version__,
        "kernel_release": parts[2] if len(parts) >= 3 else None, "uname": uname,
        "recording": str(path), "recording_sha256": sha, "recording_bytes": size,
        "format": r.source.format, "clock": r.source.clock, "cpus": r.source.cpus, "kallsyms": r.source.kallsyms,
        "abi_key": abi or "none", "abi": caps.abi, "profile": caps.profile,
        "can_contended_events": caps.contended_events, "can_acquisitions": caps.acquisitions,
        "can_waits": caps.waits, "can_holds": caps.holds, "can_holders": r.holders is not None,
        "contended_flag": caps.contended_flag, "wait_is": caps.wait_is, "cannot_show": list(caps.cannot),
        "notes": list(caps.notes), "warnings": warnings,
        "first_ts_ns": r.window.first_ts_ns, "last_ts_ns": r.window.last_ts_ns, "duration_ns": r.duration_ns,
        "cpu_time_ns": r.cpu_time_ns,
        "events": [{"name": k, "count": v} for k, v in r.events.items()],
        "missed_events": r.missed.events, "missed_unknown_gaps": r.missed.unknown_gaps,
        "missed_by_cpu": [{"name": k, "count": v} for k, v in r.missed.by_cpu.items()],
        "kernel_overrun": r.missed.kernel_overrun, "kernel_dropped_events": r.missed.kernel_dropped_events,
        "timeline_bin_ns": options.bin_ns, "top": options.top,
    }
    return {k: [v] for k, v in row.items()}

