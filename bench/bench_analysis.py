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
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "out"
sys.path.insert(0, str(REPO / "bench"))

from _measure import measure  # noqa: E402

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=100, help="copies of full.v6.dat in the scaled trace")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--file", type=Path, help="trace.dat to use instead of the scaled one")
    args = ap.parse_args()
    path = args.file or scaled_trace(args.copies)
    m = measure({"decode": ([sys.executable, "-c", DECODE, str(path)], None),
                 "report": ([sys.executable, "-m", "zlperf", "report", str(path), "--json"], None)},
                args.repeat, stdout=True)
    events = int(m["decode"].out.strip())
    json.loads(m["report"].out)
    result = {
        "file": str(path), "events": events, "repeat": args.repeat,
        "decode_cpu_s": m["decode"].cpu, "report_cpu_s": m["report"].cpu,
        "decode_wall_s": m["decode"].wall, "report_wall_s": m["report"].wall,
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
