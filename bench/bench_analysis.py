"""What the analysis adds to reading: `zlperf report FILE --json` against a full decode of FILE.

Both run as separate processes on the same file, alternately, REPEAT times; the medians of
CPU time (user+sys, which a loaded machine distorts less than wall time) and wall time are
printed, with the overhead (report - decode) / decode. Target (issue 4): < 50 %.

The file defaults to a long real zone-lock trace made by bench/scale_trace.py from
tests/data/full.v6.dat (v7, zstd); give --file for another (e.g. a lab recording).

Usage: python3 bench/bench_analysis.py [--copies N] [--repeat R] [--file F]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"

DECODE = """
import sys
from zlperf.readers import open_trace
n = 0
with open_trace(sys.argv[1]) as trace:
    for chunk in trace.chunks():
        n += len(chunk)
print(n)
"""


def scaled_trace(copies: int) -> Path:
    """bench/out/scaled{copies}.zstd.dat, made once."""
    path = OUT / f"scaled{copies}.zstd.dat"
    if not path.exists():
        OUT.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(REPO / "bench" / "scale_trace.py"), str(REPO / "tests" / "data" /
                        "full.v6.dat"), str(path), "--copies", str(copies), "--compression", "zstd"], check=True)
    return path


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(cpu seconds, wall seconds, stdout) of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, proc.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=100, help="copies of full.v6.dat in the scaled trace")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--file", type=Path, help="trace.dat to use instead of the scaled one")
    args = ap.parse_args()
    path = args.file or scaled_trace(args.copies)
    decode, report = [], []
    events = 0
    for _ in range(args.repeat):
        cpu, wall, out = timed([sys.executable, "-c", DECODE, str(path)])
        events = int(out.strip())
        decode.append((cpu, wall))
        cpu, wall, out = timed([sys.executable, "-m", "zlperf", "report", str(path), "--json"])
        json.loads(out)
        report.append((cpu, wall))
    med = lambda xs, i: statistics.median(x[i] for x in xs)
    result = {
        "file": str(path), "events": events, "repeat": args.repeat,
        "decode_cpu_s": med(decode, 0), "report_cpu_s": med(report, 0),
        "decode_wall_s": med(decode, 1), "report_wall_s": med(report, 1),
    }
    result["analysis_overhead_cpu"] = result["report_cpu_s"] / result["decode_cpu_s"] - 1
    result["analysis_overhead_wall"] = result["report_wall_s"] / result["decode_wall_s"] - 1
    print(json.dumps(result, indent=1))
    print(f"{events} events: decode {result['decode_cpu_s']:.2f} s CPU, report {result['report_cpu_s']:.2f} s CPU: "
          f"analysis adds {100 * result['analysis_overhead_cpu']:.0f}% (wall: "
          f"{100 * result['analysis_overhead_wall']:.0f}%); target < 50%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
