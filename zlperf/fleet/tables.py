"""Finding and checking the hosts' Parquet folders a fleet report reads (``zlperf export --parquet``).

A PATH is a host folder (it holds run.parquet) or a folder of them (``host=NAME/``). Every table's schema
version and columns are checked from the files' footers before an engine starts: a wrong folder is one
line naming it, not an engine's stack trace.
"""

from __future__ import annotations

__all__ = ["HostTables", "find_hosts"]

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zlperf.errors import ZlperfError
from zlperf.export.schema import METADATA_KEY, SCHEMA_VERSION, TABLES
from zlperf.extras import require

_HOW = "export each host with `zlperf export FILE --parquet DIR --host NAME`"


@dataclass
class HostTables:
    """One host's folder: its run row and stacks (read here; they are small) and its table files."""

    host: str
    folder: Path
    run: dict[str, Any]
    stacks: dict[int, tuple[str, ...]]  #: stack id -> frames
    files: dict[str, Path]  #: table -> its Parquet file


def find_hosts(paths: list[str]) -> list[HostTables]:
    """Every host folder under ``paths``, checked, ordered by host name."""
    if not paths:
        raise ZlperfError(f"fleet: give at least one folder of Parquet tables ({_HOW})")
    folders: list[Path] = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise ZlperfError(f"{path}: no such folder ({_HOW})")
        if not path.is_dir():
            raise ZlperfError(f"{path}: not a folder; give folders written by zlperf export --parquet ({_HOW})")
        if (path / "run.parquet").exists():
            folders.append(path)
            continue
        hosts = sorted(d for d in path.iterdir() if d.is_dir() and d.name.startswith("host="))
        if not hosts:
            raise ZlperfError(f"{path}: no zlperf tables here (no run.parquet, no host=NAME folders); {_HOW}")
        folders.extend(hosts)
    out = [_read_host(f) for f in folders]
    seen: dict[str, Path] = {}
    for h in out:
        if h.host in seen:
            raise ZlperfError(f"{h.folder}: host {h.host!r} is also in {seen[h.host]}; each host once "
                              "(export the other under another --host)")
        seen[h.host] = h.folder
    return sorted(out, key=lambda h: h.host)  # a fleet is a set: the report does not depend on the order given


def _read_host(folder: Path) -> HostTables:
    pq = require("pyarrow.parquet", "duckdb")
    files = {}
    for table in TABLES:
        path = folder / f"{table}.parquet"
        if not path.is_file():
            raise ZlperfError(f"{path}: missing (a host folder holds {', '.join(t + '.parquet' for t in TABLES)}; "
                              f"{_HOW})")
        _check_schema(path, table)
        files[table] = path
    run_rows = _read(pq, files["run"]).to_pylist()
    if len(run_rows) != 1:
        raise ZlperfError(f"{files['run']}: {len(run_rows)} rows; a host's run table has exactly one ({_HOW})")
    run = run_rows[0]
    host = run["host"]
    if folder.name.startswith("host=") and folder.name != f"host={host}":
        raise ZlperfError(f"{folder}: its run table says host {host!r}; folder and tables disagree (re-export "
                          "the host, or rename the folder host=NAME as its tables say)")
    stacks = {int(r["stack_id"]): tuple(r["frames"]) for r in _read(pq, files["stacks"]).to_pylist()}
    return HostTables(host=host, folder=folder, run=run, stacks=stacks, files=files)


def _read(pq: Any, path: Path) -> Any:
    try:
        return pq.read_table(str(path))
    except Exception as exc:  # pyarrow's errors have no common base worth naming
        raise ZlperfError(f"{path}: cannot read it ({str(exc).splitlines()[0] if str(exc) else exc!r})") from None


def _check_schema(path: Path, table: str) -> None:
    """The file's schema version and every column the fleet reads, with its type."""
    pq = require("pyarrow.parquet", "duckdb")
    pa = require("pyarrow", "duckdb")
    try:
        schema = pq.read_schema(str(path))
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ZlperfError(f"{path}: not a Parquet file ({first}); {_HOW}") from None
    version = (schema.metadata or {}).get(METADATA_KEY.encode(), b"").decode("utf-8", "replace")
    if version != SCHEMA_VERSION:
        said = f"schema {version!r}" if version else "no zlperf schema version"
        raise ZlperfError(f"{path}: {said}; this zlperf reads {SCHEMA_VERSION} (re-export with this zlperf)")
    expected = {"string": pa.types.is_string, "int64": pa.types.is_int64, "int32": pa.types.is_int32,
                "bool": pa.types.is_boolean, "list<string>": pa.types.is_list,
                "list<struct<name: string, count: int64>>": pa.types.is_list}
    for col in TABLES[table]:
        idx = schema.get_field_index(col.name)
        if idx < 0:
            raise ZlperfError(f"{path}: no column {col.name!r} ({table} tables of {SCHEMA_VERSION} have it)")
        t = schema.field(idx).type
        if pa.types.is_dictionary(t):
            t = t.value_type
        if not expected[col.type](t):
            raise ZlperfError(f"{path}: column {col.name!r} is {t}, not {col.type} ({SCHEMA_VERSION})")
