"""zlperf export --parquet against zlperf report on the same multi-million-event trace: speed and peak memory.

Both run as separate processes on the same file, alternately, REPEAT times; each child's CPU time and peak
RSS come from wait4()'s rusage of that child alone. Targets: export at least half the speed of report (CPU
time at most 2x), peak RSS at most 256 MB. The default file is the scaled real zone-lock trace of
bench/bench_analysis.py (tests/data/full.v6.dat repeated 100 times: 5.4 M events).

Usage: python3 bench/bench_export.py [--copies N] [--repeat R] [--file F]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from _measure import measure  # noqa: E402
from bench_analysis import scaled_trace  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=100, help="copies of full.v6.dat in the scaled trace")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--file", type=Path, help="trace.dat to use instead of the scaled one")
    args = ap.parse_args()
    path = args.file or scaled_trace(args.copies)
    out = Path(tempfile.mkdtemp(prefix="zlperf-bench-export-"))
    try:
        runs = measure({"report": ([sys.executable, "-m", "zlperf", "report", str(path), "--json"], None),
                        "export": ([sys.executable, "-m", "zlperf", "export", str(path), "--parquet", str(out),
                                    "--host", "bench"], None)}, args.repeat)
        size = sum(f.stat().st_size for f in (out / "host=bench").iterdir())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    med = {k: {"cpu_s": m.cpu, "wall_s": m.wall} for k, m in runs.items()}
    peak = {k: m.rss_mb for k, m in runs.items()}
    result = {"file": str(path), "repeat": args.repeat, "median": med, "peak_rss_mb": peak,
              "export_speed_vs_report_cpu": med["report"]["cpu_s"] / med["export"]["cpu_s"],
              "parquet_mb": size / 2**20}
    print(json.dumps(result, indent=1))
    print(f"report {med['report']['cpu_s']:.2f} s CPU, {peak['report']:.0f} MB; export {med['export']['cpu_s']:.2f} s "
          f"CPU, {peak['export']:.0f} MB: export runs at {100 * result['export_speed_vs_report_cpu']:.0f}% of report's "
          f"speed (target >= 50%), peak RSS target <= 256 MB; {result['parquet_mb']:.1f} MB of Parquet")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
