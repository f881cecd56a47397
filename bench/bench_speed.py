"""Speed and memory, side by side: `zlperf report --json` against `trace-cmd report` and `perf script -s`.

One run measures every file with every command, alternating, REPEAT times (medians), so the ratios
compare the tools under the same load on this machine:

- trace.dat files of 0.54 M, 5.4 M and 35 M zone-lock events (10, 100 and 650 copies of the real
  recording tests/data/full.v6.dat's pages, by bench/scale_trace.py; v7, zstd), against
  `trace-cmd report FILE > /dev/null`;
- perf.data files: the real recording tests/data/full.perf.data scaled the same way
  (bench/bench_perf.py), and any given with --perf (e.g. a live `perf record -g` recording, made
  with --record-perf SECS as root), against `perf script -s EMPTY.py` (a do-nothing handler).

zlperf runs twice per file: on one core (`taskset -c 0`: one process, no workers) and on all cores
(`ZLPERF_JOBS` = the cores: the recording's CPUs are analysed in that many parts, one per process, and
merged; by default zlperf only starts workers on cores the load average says are idle). Every command is a child process; its wall time, CPU time
(user + sys of it and its children) and peak RSS (largest process of its tree) come from wait4().
With --readme the table replaces the one between the speed-table markers of README.md.

The package is byte-compiled first (an installed package is; with PYTHONDONTWRITEBYTECODE set every
run would compile the changed modules again).

Usage: python3 bench/bench_speed.py [--cache DIR] [--repeat N] [--repeat-big N] [--copies 10,100,650]
                                    [--perf-copies 10,100] [--perf FILE ...] [--record-perf SECS] [--readme]
"""

from __future__ import annotations

__all__ = ["Measured", "measure", "trace_file", "perf_file", "main"]

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))

from _measure import Measured, measure  # noqa: E402
from bench_perf import empty_handler_script  # noqa: E402
from bench_read import _DECODE  # noqa: E402

TRACE_FIXTURE = REPO / "tests" / "data" / "full.v6.dat"
PERF_FIXTURE = REPO / "tests" / "data" / "full.perf.data"
PERF_KALLSYMS = REPO / "tests" / "data" / "full.perf.kallsyms.gz"
BEGIN, END = "<!-- speed-table:begin -->", "<!-- speed-table:end -->"


def trace_file(cache: Path, copies: int) -> Path:
    """The scaled zone-lock trace.dat of ``copies`` copies (v7 zstd), made once in ``cache``."""
    path = cache / f"x{copies}.zstd.dat"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        subprocess.run([sys.executable, str(REPO / "bench" / "scale_trace.py"), str(TRACE_FIXTURE), str(tmp),
                        "--copies", str(copies), "--compression", "zstd"], check=True, stdout=subprocess.DEVNULL)
        tmp.rename(path)
    return path


def perf_file(cache: Path, copies: int) -> Path:
    """The scaled zone-lock perf.data of ``copies`` copies, made once in ``cache``."""
    path = cache / f"x{copies}.perf.data"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        # In a child: this process stays small, since a child's peak RSS counts what it was forked from.
        subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); from pathlib import "
                        "Path; from bench_perf import scale_perf_data; scale_perf_data(Path(sys.argv[2]), "
                        "Path(sys.argv[3]), int(sys.argv[4]))", str(REPO / "bench"), str(PERF_FIXTURE), str(tmp),
                        str(copies)], check=True)
        tmp.rename(path)
    return path


def _zlperf(path: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "zlperf", "report", str(path), "--json", *extra]


def _events(path: Path, extra: list[str]) -> int:
    out = subprocess.run(_zlperf(path, extra), capture_output=True, check=True, cwd=REPO).stdout
    doc = json.loads(out)
    return sum(doc["events"].values())


def bench(path: Path, reference: list[str], ref_name: str, repeat: int, extra: list[str]) -> dict:
    """zlperf on one core and on all cores against ``reference`` on ``path``."""
    one_env = {**os.environ, "ZLPERF_JOBS": "1"}
    # Forced: by default zlperf starts no worker while other programs keep the cores busy.
    all_env = {**os.environ, "ZLPERF_JOBS": str(len(os.sched_getaffinity(0)))}
    cmds = {
        "ref": (reference, None),
        "one": (["taskset", "-c", "0", *_zlperf(path, extra)], one_env),
        "all": (_zlperf(path, extra), all_env),
    }
    if reference[0] == "trace-cmd":  # the floor: the fast reader's columns of every event, no analysis
        cmds["read"] = (["taskset", "-c", "0", sys.executable, "-c", _DECODE, str(path), "fast"], one_env)
    m = measure(cmds, repeat, cwd=REPO)
    return {"file": path.name, "size_mb": path.stat().st_size / 1e6, "events": _events(path, extra),
            "ref_name": ref_name, "repeat": repeat,
            **{k: {"wall": v.wall, "cpu": v.cpu, "rss_mb": v.rss_mb} for k, v in m.items()}}


def _row(r: dict) -> str:
    ref, one, all_ = (r[k] for k in ("ref", "one", "all"))
    return (f"| `{r['file']}` | {r['events'] / 1e6:.2f} M | {r['ref_name']} | {ref['wall']:.2f} s, "
            f"{ref['cpu']:.2f} CPU-s, {ref['rss_mb']:.0f} MB | {one['wall']:.2f} s, {one['cpu']:.2f} CPU-s, "
            f"{one['rss_mb']:.0f} MB | "
            f"**{ref['wall'] / one['wall']:.1f}x** | {all_['wall']:.2f} s, {all_['cpu']:.2f} CPU-s, "
            f"{all_['rss_mb']:.0f} MB | **{ref['wall'] / all_['wall']:.1f}x** |")


def floor_table(rows: list[dict]) -> str:
    """What reading alone costs (one core, every event decoded into columns, no analysis) beside the report,
    for the rows that have it: how much of the one-core report is analysis."""
    have = [r for r in rows if "read" in r]
    if not have:
        return ""
    out = ["| file | reading alone, one core: wall, CPU | ratio | zlperf report, one core: wall | analysis "
           "(report less reading) |", "| --- | --- | --- | --- | --- |"]
    for r in have:
        read, one, ref = r["read"], r["one"], r["ref"]
        out.append(f"| `{r['file']}` | {read['wall']:.2f} s, {read['cpu']:.2f} CPU-s | **{ref['wall'] / read['wall']:.1f}x** "
                   f"| {one['wall']:.2f} s | {one['wall'] - read['wall']:.2f} s |")
    return "\n".join(out) + "\n"


def table(rows: list[dict], note: str) -> str:
    """The markdown table of ``rows`` with how it was made."""
    head = ("| file | events | reference | reference: wall, CPU, peak RSS | zlperf, one core: wall, CPU, peak RSS | "
            "ratio | zlperf, all cores: wall, CPU, peak RSS | ratio |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- |\n")
    return note + "\n\n" + head + "\n".join(_row(r) for r in rows) + "\n"


def write_readme(text: str) -> None:
    """Replace the table between the speed-table markers of README.md."""
    readme = REPO / "README.md"
    doc = readme.read_text()
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} markers")
    head, rest = doc.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    readme.write_text(head + BEGIN + "\n" + text + END + tail)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("ZLPERF_BENCH_CACHE", "/var/tmp/zlperf-bench")),
                    help="where the scaled files are made once (default /var/tmp/zlperf-bench)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--repeat-big", type=int, default=None, metavar="N",
                    help="runs for files over 100 MB (default: --repeat); trace-cmd takes minutes on those")
    ap.add_argument("--copies", default="10,100,650", help="trace.dat sizes: copies of full.v6.dat's 54,296 events")
    ap.add_argument("--perf-copies", default="10,100",
                    help="perf.data sizes: copies of full.perf.data's 51,889 samples")
    ap.add_argument("--perf", action="append", default=[], type=Path, help="another perf.data (e.g. with -g)")
    ap.add_argument("--record-perf", type=float, default=0, metavar="SECS",
                    help="record a live perf.data with call chains first (root)")
    ap.add_argument("--readme", action="store_true", help="write the table into README.md")
    args = ap.parse_args(argv)
    for tool in ("trace-cmd", "perf", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} not found")
    args.cache.mkdir(parents=True, exist_ok=True)
    perf_extra = ["--kallsyms", str(PERF_KALLSYMS)]
    jobs: list[tuple[Path, list[str], str, list[str]]] = []
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "zlperf")], check=True)
    for copies in (int(c) for c in args.copies.split(",") if c):
        path = trace_file(args.cache, copies)
        jobs.append((path, ["trace-cmd", "report", str(path)], "`trace-cmd report`", []))
    perf_files = [(perf_file(args.cache, int(c)), perf_extra) for c in args.perf_copies.split(",") if c]
    if args.record_perf > 0:
        from bench_perf import _record_live

        live = args.cache / "live-g.perf.data"
        _record_live(live, args.record_perf)
        args.perf.append(live)
    perf_files += [(p, []) for p in args.perf]
    for path, extra in perf_files:
        script = args.cache / f"empty-{path.stem}.py"
        empty_handler_script(path, script)
        ref = ["perf", "script", "-i", str(path), "-s", str(script)] + (extra if extra else [])
        jobs.append((path, ref, "`perf script -s` (empty handler)", extra))
    rows = []
    for path, ref, name, extra in jobs:
        big = path.stat().st_size > 100e6 and args.repeat_big is not None
        r = bench(path, ref, name, args.repeat_big if big else args.repeat, extra)
        rows.append(r)
        print(_row(r), flush=True)
    startup = measure({"example": ([sys.executable, "-m", "zlperf", "report", "--example"], None),
                       "python": ([sys.executable, "-c", "pass"], None),
                       "numpy": ([sys.executable, "-c", "import numpy"], None)}, max(args.repeat, 5), cwd=REPO)
    start_note = (f"Start-up: `zlperf report --example` (53 k events, text report) {startup['example'].wall:.2f} s "
                  f"wall, {startup['example'].cpu:.2f} CPU-s; the interpreter alone takes "
                  f"{startup['python'].wall:.2f} s, the interpreter importing numpy "
                  f"{startup['numpy'].wall:.2f} s (medians of "
                  f"{max(args.repeat, 5)}).")
    print(start_note)
    load = os.getloadavg()
    big_note = f" --repeat-big {args.repeat_big}" if args.repeat_big is not None else ""
    note = (f"Measured {time.strftime('%Y-%m-%d')} by `python3 bench/bench_speed.py --repeat {args.repeat}{big_note} "
            f"--copies {args.copies} --perf-copies {args.perf_copies}{' --perf FILE' * len(args.perf)}` on "
            f"{os.cpu_count()} CPUs ({platform.machine()}, load average {load[0]:.1f} at the end: other jobs "
            f"share the machine, so compare ratios, which come from the same run); medians of the runs. "
            "Ratio: the reference's wall time over zlperf's.")
    floor = floor_table(rows)
    floor_note = ("\nThe floor, in the same run: reading alone (`bench/bench_read.py`'s decode: the fast reader "
                  "turns every event into columns, no analysis; one core, one process with its prefetch "
                  "thread) against the same reference.\n\n" + floor) if floor else ""
    text = table(rows, note) + floor_note + "\n" + start_note + "\n"
    print(text)
    if args.readme:
        write_readme(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
