"""Measuring commands for the benchmarks: wall time, CPU time and peak RSS of a child process, from wait4().

The kernel charges a forked child the peak RSS of the process it was forked from, even across exec: forking
the measured command straight from a bench that has grown large (a scaled trace made in-process, numpy
imported) would report the bench's own size as the command's. So the command is started by a tiny fresh
Python (``_LAUNCHER``), which forks and execs it and sends wait4()'s figures back through a pipe (as
tests/hostile.py does); the launcher's own ~7 MB is then the floor of any figure.

``measure`` runs several commands alternately, REPEAT times (so they share the same load on a shared
machine), and keeps the medians of wall and CPU time and the largest peak RSS of each.
"""

from __future__ import annotations

__all__ = ["Measured", "run_once", "measure"]

import os
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

#: Runs the command in a grandchild and reports its exit code and rusage (wall seconds measured here, without
#: the launcher's own start-up). ru_maxrss: peak RSS of the largest process of the command's tree, in KiB.
_LAUNCHER = r"""
import os, sys, time
report_fd = int(sys.argv[1])
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.close(report_fd)
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
os.write(report_fd, ("%d %r %r %d" % (os.waitstatus_to_exitcode(status), wall, ru.ru_utime + ru.ru_stime,
                                      ru.ru_maxrss)).encode())
"""


@dataclass
class Measured:
    """One command: wall seconds, CPU seconds (user + sys of it and its children), peak RSS (MB) of its
    largest process; from :func:`measure`, medians of wall and CPU and the largest RSS of the runs."""

    wall: float
    cpu: float
    rss_mb: float
    out: str = ""  #: stdout (of the last run) when asked for, else ""
    err: str = ""  #: stderr (of the last run)


def run_once(cmd: list[str], env: Optional[dict] = None, cwd: Union[str, Path, None] = None,
             stdout: bool = False) -> Measured:
    """One run of ``cmd`` (stdout to /dev/null unless ``stdout``); exits the bench if it fails."""
    report_r, report_w = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _LAUNCHER, str(report_w), *map(str, cmd)],
                                stdout=subprocess.PIPE if stdout else subprocess.DEVNULL, stderr=subprocess.PIPE,
                                cwd=cwd, env=env, pass_fds=(report_w,))
    finally:
        os.close(report_w)
    out, err = proc.communicate()
    with os.fdopen(report_r, "rb") as fh:
        report = fh.read().split()
    text = err.decode(errors="replace")
    if len(report) != 4 or int(report[0]) != 0:
        code = report[0].decode() if report else f"launcher {proc.returncode}"
        raise SystemExit(f"bench: {' '.join(map(str, cmd))} failed (exit {code}): {text[-2000:]}")
    return Measured(float(report[1]), float(report[2]), int(report[3]) / 1024,
                    out.decode(errors="replace") if stdout else "", text)


def measure(commands: dict[str, tuple[list[str], Optional[dict]]], repeat: int, cwd: Union[str, Path, None] = None,
            stdout: bool = False) -> dict[str, Measured]:
    """Run every command (name: (argv, env)) ``repeat`` times, alternating; medians of wall and CPU, largest
    peak RSS, and the last run's output."""
    runs: dict[str, list[Measured]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, (cmd, env) in commands.items():
            runs[name].append(run_once(cmd, env, cwd, stdout))
    return {name: Measured(statistics.median(r.wall for r in rs), statistics.median(r.cpu for r in rs),
                           max(r.rss_mb for r in rs), rs[-1].out, rs[-1].err) for name, rs in runs.items()}
