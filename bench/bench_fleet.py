"""zlperf fleet over 100 and 1000 hosts on DuckDB and Spark local: time and memory, and how they grow.

Synthetic hosts are copies of real recordings' Parquet tables (zlperf export of tests/data/full.v6.dat,
zlperf/data/full.dat and tests/data/full.perf.data, in turn), each with its own host name and its wait and
hold values shifted by its index (so the pooled distributions have more distinct values as hosts are
added, as a real fleet's do). Made once under bench/out/fleet{N}/.

Each run is `zlperf fleet DIR --json --engine E` as a child process; wall time, and the peak resident memory
and CPU time of the child and every process it starts (Spark's JVM), sampled from /proc every 0.2 s.

Usage: python3 bench/bench_fleet.py [--hosts 100 1000] [--engines duckdb spark] [--repeat 1]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
sys.path.insert(0, str(REPO))

BASES = [REPO / "tests" / "data" / "full.v6.dat", REPO / "zlperf" / "data" / "full.dat",
         REPO / "tests" / "data" / "full.perf.data"]
_SHIFTED = ("wait_ns", "hold_ns", "holder_hold_ns")


def make_fleet(hosts: int) -> Path:
    """bench/out/fleet{hosts}/host=hNNNN/..., made once."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from zlperf.export.parquet import export_recording
    from zlperf.export.schema import TABLES

    root = OUT / f"fleet{hosts}"
    if (root / "done").exists():
        return root
    bases = OUT / "fleet-bases"
    for i, path in enumerate(BASES):
        if not (bases / f"host=b{i}" / "run.parquet").exists():
            export_recording(str(path), str(bases), f"b{i}")
    tables = [{t: pq.read_table(str(bases / f"host=b{i}" / f"{t}.parquet")) for t in TABLES} for i in range(len(BASES))]
    for h in range(hosts):
        name = f"h{h:04d}"
        folder = root / f"host={name}"
        folder.mkdir(parents=True, exist_ok=True)
        for t, table in tables[h % len(BASES)].items():
            table = table.set_column(0, "host", pa.array([name] * table.num_rows, pa.string()).dictionary_encode()
                                     if t not in ("run", "stacks") else pa.array([name] * table.num_rows, pa.string()))
            for col in _SHIFTED:
                i = table.schema.get_field_index(col)
                if i >= 0:
                    table = table.set_column(i, col, pc.add(table[col], pa.scalar(h, pa.int64())))
            pq.write_table(table, str(folder / f"{t}.parquet"), compression="zstd")
    (root / "done").write_text("")
    return root


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def run(cmd: list[str]) -> dict:
    """Wall seconds, peak RSS (MB) and CPU seconds of ``cmd`` and its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak, cpu = [0], {}

    def sample() -> None:
        while proc.poll() is None:
            rss = 0
            for p in _tree(proc.pid):
                try:
                    stat = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
                    rss += int(stat[21]) * page
                    cpu[p] = (int(stat[11]) + int(stat[12])) / tick
                except (OSError, IndexError, ValueError):
                    pass
            peak[0] = max(peak[0], rss)
            time.sleep(0.2)

    t0 = time.perf_counter()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"bench: {' '.join(cmd)} failed: {err.decode()[-2000:]}")
    doc = json.loads(out)
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(peak[0] / 2**20), "cpu_s": round(sum(cpu.values()), 1),
            "acquisitions": doc["totals"]["acquisitions"], "hosts": len(doc["hosts"])}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hosts", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--engines", nargs="+", default=["duckdb", "spark"])
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    results = []
    for n in args.hosts:
        root = make_fleet(n)
        for engine in args.engines:
            for _ in range(args.repeat):
                r = run([sys.executable, "-m", "zlperf", "fleet", str(root), "--json", "--engine", engine])
                r.update(engine=engine, fleet=n)
                results.append(r)
                print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
