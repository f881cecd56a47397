"""What `zlperf export FILE --perfetto OUT` costs on a multi-million-event trace, against `zlperf report FILE --json`.

Both run as child processes on the same file; each child's CPU time and peak RSS come from wait4()'s
rusage of that child alone. The report is the analysis alone (pass 1 of the export); what the export adds
on top is pass 2 (the stream of observations) and the packet writer. Run at two sizes, the export's extra
memory should stay flat (packets go to the file in bounded batches) while the output grows with the events.

The file defaults to long real zone-lock traces made by bench/scale_trace.py from tests/data/full.v6.dat
(v7, zstd), at --copies and a fifth of it; give --file for another (e.g. a lab recording).

Usage: python3 bench/bench_perfetto.py [--copies N] [--file F]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from _measure import run_once  # noqa: E402
from bench_analysis import scaled_trace  # noqa: E402


def child(cmd: list[str]) -> dict:
    """Wall and CPU seconds, peak RSS (MB) of one child process (its own rusage, via wait4: bench/_measure.py)."""
    m = run_once(cmd, env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=REPO)
    return {"wall_s": round(m.wall, 2), "cpu_s": round(m.cpu, 2), "peak_rss_mb": round(m.rss_mb, 1),
            "stderr": m.err.strip()}


def measure(path: Path) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "trace.pftrace"
        report = child([sys.executable, "-m", "zlperf", "report", str(path), "--json"])
        export = child([sys.executable, "-m", "zlperf", "export", str(path), "--perfetto", str(out)])
        size = out.stat().st_size
    events = json.loads(subprocess.run([sys.executable, "-m", "zlperf", "report", str(path), "--json"],
                                       capture_output=True, text=True, check=True, cwd=REPO,
                                       env=dict(os.environ, PYTHONPATH=str(REPO))).stdout)["events"]
    return {"file": str(path), "events": sum(events.values()), "report": report, "export": export,
            "pftrace_mb": round(size / 2**20, 1),
            "export_extra_rss_mb": round(export["peak_rss_mb"] - report["peak_rss_mb"], 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=100, help="copies of full.v6.dat in the larger scaled trace")
    ap.add_argument("--file", type=Path, help="a trace to measure instead of the scaled ones")
    args = ap.parse_args()
    files = [args.file] if args.file else [scaled_trace(max(1, args.copies // 5)), scaled_trace(args.copies)]
    for path in files:
        r = measure(path)
        print(json.dumps(r, indent=1))
        print(f"{r['events']} events: report {r['report']['wall_s']} s, {r['report']['peak_rss_mb']} MB; export "
              f"{r['export']['wall_s']} s ({r['export']['cpu_s']} CPU-s), {r['export']['peak_rss_mb']} MB peak RSS "
              f"(+{r['export_extra_rss_mb']} MB over the report), {r['pftrace_mb']} MB .pftrace")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
