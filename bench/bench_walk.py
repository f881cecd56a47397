"""The native page walker against the numpy walk: whole-file decoding and `zlperf report`, the same files in
the same run (alternating, medians), one process each (`-j 1`).

`ZLPERF_NATIVE=0` turns the native walker off (zlperf/readers/tracedat/native.py); everything else is the
same code, and the reports are byte-identical (tests/test_native_walk.py).
Usage: python3 bench/bench_walk.py FILE [FILE ...] [--repeat N]
"""

from __future__ import annotations

__all__ = ["main"]

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from _measure import measure  # noqa: E402

#: Decodes every event of a file in this process (no workers) and drops the chunks.
_DECODE = ("import sys\nfrom zlperf.readers.tracedat.reader import FastTraceReader\n"
           "with FastTraceReader(sys.argv[1], jobs=1) as r:\n    for _chunk in r.chunks():\n        pass\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    print("| file | what | numpy walk: wall, CPU, peak RSS | native walk: wall, CPU, peak RSS | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for path in args.files:
        for what, cmd in (("decode", [sys.executable, "-c", _DECODE, str(path)]),
                          ("report --json -j 1", [sys.executable, "-m", "zlperf", "report", str(path), "--json",
                                                   "-j", "1"])):
            commands = {flag: (cmd, dict(os.environ, ZLPERF_NATIVE=flag)) for flag in ("0", "1")}
            got = measure(commands, args.repeat, cwd=REPO)
            a, b = got["0"], got["1"]
            print(f"| `{path.name}` | {what} | {a.wall:.2f} s, {a.cpu:.2f} CPU-s, {a.rss_mb:.0f} MB | "
                  f"{b.wall:.2f} s, {b.cpu:.2f} CPU-s, {b.rss_mb:.0f} MB | **{a.wall / b.wall:.2f}x** |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
