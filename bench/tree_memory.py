"""Peak memory of a whole process tree: the sum of its processes' PSS, sampled every 10 ms.

wait4() reports the peak RSS of the largest process of a tree, which is what one process costs; a command
that forks workers (`zlperf report -j 2`) costs the sum of them. RSS would count the pages the workers
share with the process they were forked from (the interpreter, numpy, the modules) once per process; PSS
divides each shared page among its sharers, so the sum is what the tree holds.

Usage: python3 bench/tree_memory.py [--repeat N] -- COMMAND [ARG ...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:  # ended between the listing and the read
        pass
    return 0


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo.extend(int(c) for c in fh.read().split())
        except OSError:
            pass
    return out


def peak_tree_pss_mb(cmd: list[str], interval: float = 0.01) -> float:
    """Run ``cmd`` (stdout to /dev/null) and return the largest sum of its tree's PSS seen, in MB."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, sum(_pss_kb(p) for p in _tree(proc.pid)))
        time.sleep(interval)
    if proc.returncode:
        raise SystemExit(f"tree_memory: {' '.join(cmd)} failed (exit {proc.returncode})")
    return peak / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        ap.error("give a command after --")
    peaks = [peak_tree_pss_mb(cmd) for _ in range(args.repeat)]
    print(f"peak PSS of the process tree: {max(peaks):.0f} MB (runs: {', '.join(f'{p:.0f}' for p in peaks)})")


if __name__ == "__main__":
    sys.exit(main())
