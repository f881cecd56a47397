"""`zlperf report perf.data` against `perf script -s` with an empty handler: same file, same run.

Each file is read alternately by both commands (output to /dev/null), REPEAT times; the
medians of wall time and the ratio are printed. Files: the real zone-lock recording
tests/data/full.perf.data, the same recording scaled up (its samples repeated N times,
each copy shifted in time after the previous one, so per-CPU order stays valid and both
tools see a long recording of real events), files given with --file, and optionally a live
recording with call chains made here (--record SECS, root: kmem:mm_page_alloc/free and
lock:contention_begin/end with -g while two processes churn memory).

Usage: python3 bench/bench_perf.py [--scale N] [--repeat R] [--file F ...] [--record SECS]
"""

from __future__ import annotations

__all__ = ["scale_perf_data", "empty_handler_script", "bench_file"]

import argparse
import re
import resource
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "data" / "full.perf.data"
FIXTURE_KALLSYMS = REPO / "tests" / "data" / "full.perf.kallsyms.gz"
PERF = "/usr/bin/perf"

# sample_type bits before TIME in a PERF_RECORD_SAMPLE (IDENTIFIER, IP, TID): where the time word is.
_IDENTIFIER, _IP, _TID, _TIME = 1 << 16, 1 << 0, 1 << 1, 1 << 2


def scale_perf_data(src: Path, dst: Path, copies: int) -> int:
    """Write ``dst``: ``src`` with its sample records repeated ``copies`` times, time-shifted.

    Non-sample records (COMM, MMAP, ...) stay once, before the samples. Feature sections are
    moved after the longer data section. Returns the number of samples written.
    """
    buf = src.read_bytes()
    attr_size, a_off, a_size, d_off, d_size = struct.unpack_from("<QQQQQ", buf, 16)
    flags = struct.unpack_from("<4Q", buf, 72)
    sample_types = {struct.unpack_from("<Q", buf, a_off + i * attr_size + 24)[0] for i in range(a_size // attr_size)}
    prefix = _IDENTIFIER | _IP | _TID | _TIME
    if len({t & prefix for t in sample_types}) != 1:
        raise SystemExit(f"{src}: events with different sample layouts before the time: cannot scale this file")
    st = sample_types.pop()
    if not st & _TIME:
        raise SystemExit(f"{src}: samples have no time")
    time_at = 8 * (1 + bool(st & _IDENTIFIER) + bool(st & _IP) + bool(st & _TID))
    others, samples = [], []
    pos, end = d_off, d_off + d_size
    t_min, t_max = None, 0
    while pos < end:
        rtype, _misc, size = struct.unpack_from("<IHH", buf, pos)
        rec = buf[pos:pos + size]
        if rtype == 9:
            t = struct.unpack_from("<Q", rec, time_at)[0]
            t_min = t if t_min is None else min(t_min, t)
            t_max = max(t_max, t)
            samples.append(rec)
        else:
            others.append(rec)
        pos += size
    span = (t_max - (t_min or 0)) + 1_000_000
    out = bytearray(b"".join(others))
    for k in range(copies):
        shift = k * span
        for rec in samples:
            r = bytearray(rec)
            struct.pack_into("<Q", r, time_at, struct.unpack_from("<Q", r, time_at)[0] + shift)
            out += r
    new_size = len(out)
    delta = new_size - d_size
    nfeat = sum(bin(f).count("1") for f in flags)
    table = bytearray(buf[end:end + 16 * nfeat])
    for i in range(nfeat):
        off, size = struct.unpack_from("<QQ", table, 16 * i)
        struct.pack_into("<QQ", table, 16 * i, off + delta, size)
    head = bytearray(buf[:d_off])
    struct.pack_into("<Q", head, 48, new_size)  # data section size
    dst.write_bytes(bytes(head) + bytes(out) + bytes(table) + buf[end + 16 * nfeat:])
    return len(samples) * copies


def empty_handler_script(path: Path, dst: Path) -> None:
    """A perf script with a do-nothing handler for every tracepoint of ``path`` (and trace_unhandled)."""
    names = subprocess.run([PERF, "evlist", "-i", str(path)], capture_output=True, text=True, check=True).stdout.split()
    lines = ["# Empty handlers: what perf script costs before any analysis.\n"]
    for name in names:
        if re.fullmatch(r"\w+:\w+", name) and not name.startswith("dummy:"):
            system, event = name.split(":", 1)
            lines.append(f"def {system}__{event}(*args):\n    pass\n\n")
    lines.append("def trace_unhandled(*args):\n    pass\n")
    dst.write_text("".join(lines))


def _run(cmd: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+sys) of one run; CPU time is steadier on a shared machine."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # cwd: `python3 -m zlperf` then runs this checkout's zlperf, whatever is installed.
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=REPO)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _count(path: Path) -> int:
    out = subprocess.run([PERF, "script", "-i", str(path), "-F", "event"], capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def bench_file(path: Path, script: Path, repeat: int, kallsyms: Path | None = None) -> dict:
    """Median wall seconds of both commands on ``path``, run alternately ``repeat`` times."""
    zl = [sys.executable, "-m", "zlperf", "report", str(path)]
    ps = [PERF, "script", "-i", str(path), "-s", str(script)]
    if kallsyms:
        zl += ["--kallsyms", str(kallsyms)]
        ps += ["--kallsyms", str(kallsyms)]
    t_zl, t_ps = [], []
    for _ in range(repeat):
        t_ps.append(_run(ps))
        t_zl.append(_run(zl))
    events = _count(path)
    zl_wall, ps_wall = (statistics.median(t[0] for t in ts) for ts in (t_zl, t_ps))
    zl_cpu, ps_cpu = (statistics.median(t[1] for t in ts) for ts in (t_zl, t_ps))
    return {"file": str(path), "events": events, "zlperf_s": zl_wall, "perf_script_s": ps_wall,
            "ratio": ps_wall / zl_wall, "zlperf_cpu_s": zl_cpu, "perf_script_cpu_s": ps_cpu,
            "cpu_ratio": ps_cpu / zl_cpu, "zlperf_ev_s": events / zl_wall, "perf_ev_s": events / ps_wall}


_CHURN = """
import mmap, os, time
end = time.time() + {seconds!r}
kids = [os.fork() for _ in range(2)]
if 0 in kids:
    while time.time() < end:  # touch and free 64 MB: page allocations, frees and lock contention
        m = mmap.mmap(-1, 64 << 20)
        m[::4096] = b"x" * 16384
        m.close()
    os._exit(0)
for k in kids:
    os.waitpid(k, 0)
"""


def _record_live(dst: Path, seconds: float) -> None:
    """A real recording with call chains on this kernel: page events plus lock:contention_* (-g)."""
    cmd = [PERF, "record", "-q", "-a", "-g", "-e", "kmem:mm_page_alloc", "-e", "kmem:mm_page_free",
           "-e", "lock:contention_begin", "-e", "lock:contention_end", "-o", str(dst), "--",
           sys.executable, "-c", _CHURN.format(seconds=seconds)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, default=20, help="copies of the fixture's samples in the scaled file")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each command per file (median)")
    ap.add_argument("--file", action="append", default=[], help="another perf.data to compare on")
    ap.add_argument("--record", type=float, default=0, metavar="SECS", help="also record a live perf.data with call chains")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="zlperf-bench-") as tmp:
        tmpd = Path(tmp)
        files: list[tuple[Path, Path | None]] = [(FIXTURE, FIXTURE_KALLSYMS)]
        if args.scale > 1:
            scaled = tmpd / f"full-x{args.scale}.perf.data"
            scale_perf_data(FIXTURE, scaled, args.scale)
            files.append((scaled, FIXTURE_KALLSYMS))
        if args.record > 0:
            live = tmpd / "live-g.perf.data"
            _record_live(live, args.record)
            files.append((live, None))
        files += [(Path(f), None) for f in args.file]
        print(f"{'file':<26} {'events':>8}  {'wall: zlperf':>12} {'perf -s':>8} {'ratio':>6}   "
              f"{'cpu: zlperf':>11} {'perf -s':>8} {'ratio':>6}")
        for path, ksyms in files:
            script = tmpd / f"empty-{path.stem}.py"
            empty_handler_script(path, script)
            r = bench_file(path, script, args.repeat, ksyms)
            print(f"{path.name:<26} {r['events']:>8}  {r['zlperf_s']:>11.2f}s {r['perf_script_s']:>7.2f}s "
                  f"{r['ratio']:>5.1f}x   {r['zlperf_cpu_s']:>10.2f}s {r['perf_script_cpu_s']:>7.2f}s "
                  f"{r['cpu_ratio']:>5.1f}x")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
