"""Read benchmark: whole-process zlperf full decode vs `trace-cmd report FILE > /dev/null`.

Both run as child processes on the same file in the same run, alternating; reports events/s,
the ratio, CPU seconds and peak RSS of each (from wait4's rusage of that child alone).
Usage: python3 bench/bench_read.py [FILE ...] [--repeat N] [--record] [--reader fast|libtracecmd]
"""

from __future__ import annotations

__all__ = ["measure", "main"]

import argparse
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT = Path("/var/tmp/zlperf-bench/big.dat")

# The zlperf side: open, decode every event into columns, count them.
_DECODE = """
import sys
from zlperf.readers import open_trace
n = 0
with open_trace(sys.argv[1], reader=sys.argv[2]) as r:
    for chunk in r.chunks():  # the default buffer (an `extract -B` file's instance)
        n += len(chunk)
    w = len(r.info.warnings)
print(n, w)
"""


@dataclass
class Run:
    """One child process: wall and CPU seconds, peak RSS (MB), its stdout."""

    wall: float
    cpu: float
    rss_mb: float
    out: str


def _child(cmd: list[str], stdout=subprocess.PIPE) -> Run:
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.DEVNULL)
    out = b""
    if stdout == subprocess.PIPE:
        out = proc.stdout.read()  # type: ignore[union-attr]
    _pid, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed (status {status})")
    # ru_maxrss is in KiB on Linux.
    return Run(wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, out.decode())


def uncompressed_bytes(path: Path) -> int:
    """Ring-buffer page bytes in the file (compressed chunks counted by their stated size)."""
    import struct

    from zlperf.readers.tracedat import TraceDatFile

    f = TraceDatFile(str(path))
    total = 0
    try:
        for buf in f.buffers:
            for cd in buf.cpus:
                if not buf.compressed:
                    total += cd.size
                    continue
                (count,) = struct.unpack("<I", f.pread(cd.offset, 4, "chunk count"))
                pos = cd.offset + 4
                for _ in range(count):
                    csize, usize = struct.unpack("<II", f.pread(pos, 8, "chunk header"))
                    total += usize
                    pos += 8 + csize
    finally:
        f.close()
    return total


def measure(path: Path, repeat: int = 3, reader: str = "fast") -> dict:
    """Alternate trace-cmd report and the zlperf decode ``repeat`` times; medians."""
    tc: list[Run] = []
    zl: list[Run] = []
    events = None
    for _ in range(repeat):
        with open(os.devnull, "wb") as null:
            tc.append(_child(["trace-cmd", "report", str(path)], stdout=null))
        run = _child([sys.executable, "-c", _DECODE, str(path), reader])
        zl.append(run)
        events = int(run.out.split()[0])
    med = lambda runs, key: statistics.median(getattr(r, key) for r in runs)  # noqa: E731
    res = {
        "file": str(path), "size_mb": path.stat().st_size / 1e6, "data_mb": uncompressed_bytes(path) / 1e6,
        "events": events, "repeat": repeat, "reader": reader,
        "tc_wall": med(tc, "wall"), "tc_cpu": med(tc, "cpu"), "tc_rss": max(r.rss_mb for r in tc),
        "zl_wall": med(zl, "wall"), "zl_cpu": med(zl, "cpu"), "zl_rss": max(r.rss_mb for r in zl),
    }
    res["tc_eps"] = events / res["tc_wall"]
    res["zl_eps"] = events / res["zl_wall"]
    res["ratio_wall"] = res["tc_wall"] / res["zl_wall"]
    res["ratio_cpu"] = res["tc_cpu"] / res["zl_cpu"]
    return res


def _print(res: dict) -> None:
    print(f"{res['file']}: {res['size_mb']:.1f} MB on disk, {res['data_mb']:.1f} MB of ring-buffer pages, "
          f"{res['events']:,} events (median of {res['repeat']})")
    print(f"  {'':24}{'wall s':>9}{'M events/s':>12}{'CPU s':>9}{'peak RSS MB':>13}")
    print(f"  {'trace-cmd report':24}{res['tc_wall']:9.2f}{res['tc_eps'] / 1e6:12.2f}{res['tc_cpu']:9.2f}"
          f"{res['tc_rss']:13.0f}")
    print(f"  {'zlperf ' + res['reader'] + ' decode':24}{res['zl_wall']:9.2f}{res['zl_eps'] / 1e6:12.2f}"
          f"{res['zl_cpu']:9.2f}{res['zl_rss']:13.0f}")
    print(f"  ratio: {res['ratio_wall']:.1f}x events/s (wall), {res['ratio_cpu']:.1f}x (CPU time)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 epilog="examples:\n  python3 bench/bench_read.py --record   # record "
                                 "/var/tmp/zlperf-bench/big.dat first (root)\n  python3 bench/bench_read.py "
                                 "zlperf/data/full.dat --repeat 5",
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--reader", default="fast", choices=["fast", "libtracecmd"])
    ap.add_argument("--record", action="store_true", help=f"record {DEFAULT} first (needs root and tracefs)")
    ap.add_argument("--buffer-kb", type=int, default=600000, help="per-CPU buffer for --record (KiB)")
    args = ap.parse_args(argv)
    files = args.files or [DEFAULT]
    if args.record:
        sys.path.insert(0, str(HERE))
        from record_trace import record_kmem_trace

        DEFAULT.parent.mkdir(parents=True, exist_ok=True)
        record_kmem_trace(str(DEFAULT), buffer_kb=args.buffer_kb, seconds=300)
    for f in files:
        if not f.exists():
            print(f"bench: {f}: no such file (run with --record to make it)", file=sys.stderr)
            return 2
        _print(measure(f, args.repeat, args.reader))
    return 0


if __name__ == "__main__":
    sys.exit(main())
