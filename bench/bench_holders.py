"""What holder attribution ("who made them wait") adds to `zlperf report` on a multi-million-event trace.

In one process, alternately, REPEAT times: the whole analysis of FILE as `zlperf report --json` does it
(read, analyse, build the document), once as shipped and once with the attribution switched off (its
collector replaced by one that keeps nothing). The medians of process CPU time give the overhead.
Target: < 15 %. The default file is the scaled real zone-lock trace of bench/bench_analysis.py.

Usage: python3 bench/bench_holders.py [--copies N] [--repeat R] [--file F]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_analysis import scaled_trace  # noqa: E402

from zlperf.analysis import aggregate, analyze  # noqa: E402
from zlperf.analysis.holders import HolderAttribution  # noqa: E402
from zlperf.readers import open_trace  # noqa: E402
from zlperf.report import build_document  # noqa: E402


class _Off(HolderAttribution):
    """Keeps nothing: the report without its 'who made them wait' section."""

    def add(self, releases, waits) -> None:
        pass

    def finish(self):
        return None


def one(path: Path, holders: bool) -> tuple[float, float, dict]:
    aggregate.HolderAttribution = HolderAttribution if holders else _Off  # type: ignore[misc]
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with open_trace(str(path)) as trace:
        doc = build_document(analyze(trace))
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    return (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), t1 - t0, doc


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=100, help="copies of full.v6.dat in the scaled trace")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--file", type=Path, help="a hold-time trace.dat instead of the scaled one")
    args = ap.parse_args()
    path = args.file or scaled_trace(args.copies)
    on, off = [], []
    for _ in range(args.repeat):
        cpu, wall, doc = one(path, True)
        on.append((cpu, wall))
        assert doc["holders"] is not None, "not a hold-time recording"
        cpu, wall, plain = one(path, False)
        off.append((cpu, wall))
        assert plain["holders"] is None
    events = sum(doc["events"].values())
    med = lambda xs, i: statistics.median(x[i] for x in xs)
    result = {"file": str(path), "events": events, "waits": doc["holders"]["waits"], "repeat": args.repeat,
              "with_holders_cpu_s": med(on, 0), "without_cpu_s": med(off, 0),
              "with_holders_wall_s": med(on, 1), "without_wall_s": med(off, 1)}
    result["overhead_cpu"] = result["with_holders_cpu_s"] / result["without_cpu_s"] - 1
    print(json.dumps(result, indent=1))
    print(f"{events} events, {result['waits']} waits: report {result['without_cpu_s']:.2f} s CPU without holder "
          f"attribution, {result['with_holders_cpu_s']:.2f} s with: +{100 * result['overhead_cpu']:.1f}% "
          "(target < 15%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
