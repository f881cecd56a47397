"""Instructions executed by a zlperf command, counted by valgrind's callgrind: a figure that does not move
with the machine's load (wall times on shared vCPUs move by +-10% from run to run), for checking that a change
to a hot path saves work before measuring its time with bench_speed.py.

Each TREE is a checkout of zlperf (its package first on PYTHONPATH, the native page walker as built there);
the same command runs in each, one after the other, single process (`-j 1`).
Usage: python3 bench/instructions.py FILE [--tree DIR ...] [-- EXTRA zlperf report ARGS]
  e.g. python3 bench/instructions.py x10.zstd.dat --tree /tmp/before --tree .
"""

from __future__ import annotations

__all__ = ["instructions", "main"]

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def instructions(tree: Path, args: list[str]) -> int:
    """Instructions (callgrind's Ir) of ``python3 -m zlperf ARGS`` run with ``tree``'s package."""
    # The interpreter itself, not a launcher script (pyenv's shims are shell scripts valgrind would follow).
    python = os.path.realpath(sys.executable)
    # Byte-compiled first, as an installed package is: compiling the sources would be counted otherwise.
    subprocess.run([python, "-m", "compileall", "-q", str(tree / "zlperf")], check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=str(tree), ZLPERF_JOBS="1")
        proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out", python, "-m", "zlperf",
                               *args], cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or found is None:
        raise SystemExit(f"instructions: {tree}: zlperf {' '.join(args)} failed: {proc.stderr[-1500:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        at = argv.index("--")
        argv, extra = argv[:at], argv[at + 1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file", type=Path)
    ap.add_argument("--tree", type=Path, action="append", help="a zlperf checkout (default: this one)")
    args = ap.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise SystemExit("instructions: valgrind is not installed (apt install valgrind)")
    trees = args.tree or [REPO]
    report = ["report", str(args.file.resolve()), "--json", "-j", "1", *extra]
    first = None
    for tree in trees:
        n = instructions(tree.resolve(), report)
        first = first or n
        print(f"{tree}: {n / 1e9:.3f} G instructions ({n / first:.3f} of the first)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
