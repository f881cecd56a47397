"""A small page-allocator workload: N processes, one pinned per CPU, churning anonymous memory.

Each process maps a region with MAP_POPULATE, touches one byte per page and unmaps it, in a loop,
so every CPU allocates and frees pages through the zone lock. Run it with ``python3 -m zlperf.workload``.
"""

from __future__ import annotations

__all__ = ["churn", "run", "main"]

import argparse
import mmap
import os
import signal
import sys
import time
from typing import List, Optional, Sequence, Tuple

_PAGE = mmap.PAGESIZE
# MAP_POPULATE is in the mmap module since Python 3.10; its value is 0x8000 on every Linux arch.
_MAP_POPULATE = getattr(mmap, "MAP_POPULATE", 0x8000)

_EPILOG = """examples:
  python3 -m zlperf.workload                       # one process per CPU, 64 MB regions, 5 s
  python3 -m zlperf.workload --procs 2 --seconds 3 --mb 32
  zlperf record --profile stock -o s.dat -- python3 -m zlperf.workload --seconds 3
"""


def churn(seconds: float, mb: int) -> int:
    """Map, touch and unmap ``mb`` MiB of anonymous memory until ``seconds`` pass; returns rounds done."""
    size = max(1, mb) << 20
    flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_POPULATE
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        region = mmap.mmap(-1, size, flags=flags)
        # MAP_POPULATE faulted every page in; a write per page dirties it like a real user would.
        for off in range(0, size, _PAGE):
            region[off] = 1
        region.close()  # munmap: the pages go back through the per-CPU lists and the zone lock
        rounds += 1
    return rounds


#: Task name of the workers, so reports and independent counters can pick them out.
WORKER_COMM = "zlperf-churn"


def _name_worker() -> None:
    try:
        with open("/proc/self/comm", "w") as fh:
            fh.write(WORKER_COMM)
    except OSError:
        pass  # not on Linux /proc: the name only helps reading reports


def _child(cpu: Optional[int], seconds: float, mb: int, wfd: int) -> None:
    """Body of one forked worker: pin, churn, report its pid and rounds through the pipe, exit without cleanup."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        _name_worker()
        rounds = churn(seconds, mb)
        os.write(wfd, f"{os.getpid()} {rounds}\n".encode())
    except BaseException:  # a worker must never return into the parent's code
        code = 1
    finally:
        os._exit(code)


def run(procs: Optional[int] = None, seconds: float = 5.0, mb: int = 64) -> List[Tuple[int, int]]:
    """Fork ``procs`` workers (default: one per usable CPU), pinned round-robin; returns (pid, rounds) of each."""
    cpus = sorted(os.sched_getaffinity(0))
    n = procs if procs and procs > 0 else len(cpus)
    rfd, wfd = os.pipe()
    pids = []
    try:
        for i in range(n):
            pid = os.fork()
            if pid == 0:
                os.close(rfd)
                _child(cpus[i % len(cpus)], seconds, mb, wfd)
            pids.append(pid)
    finally:
        os.close(wfd)
        _reap(pids)
    with os.fdopen(rfd) as r:
        return [(int(pid), int(rounds)) for pid, rounds in (line.split() for line in r.read().splitlines())]


def _ignore_stops() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _reap(pids: List[int]) -> None:
    """Wait for every worker; on Ctrl-C or SIGTERM stop the ones still running first, then re-raise."""
    waiting = list(pids)
    try:
        while waiting:
            os.waitpid(waiting[0], 0)
            waiting.pop(0)
    except KeyboardInterrupt:
        # A Ctrl-C at a terminal reaches this process and a recorder forwards one more: a second interrupt
        # must not cut the clean-up short (or the summary line in main) with a traceback.
        _ignore_stops()
        for pid in waiting:  # a Ctrl-C at a terminal reached them already; a forwarded one did not
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for pid in waiting:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
        raise


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command-line entry point; prints one summary line to stderr."""
    parser = argparse.ArgumentParser(
        prog="python3 -m zlperf.workload",
        description="Churn anonymous memory in N processes pinned one per CPU (zone-lock traffic).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--procs", type=int, default=0, help="worker processes (default: one per CPU)")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to run (default 5)")
    parser.add_argument("--mb", type=int, default=64, help="region size per round, MiB (default 64)")
    args = parser.parse_args(argv)
    if args.seconds < 0 or args.mb <= 0 or args.procs < 0:
        parser.error("--seconds, --mb and --procs must be positive")
    # SIGTERM must stop the workers too, not orphan them: treat it like Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    start = time.monotonic()
    try:
        rounds = run(args.procs, args.seconds, args.mb)
    except KeyboardInterrupt:
        _ignore_stops()  # usually done in _reap already; here for an interrupt that came before it
        print("workload: interrupted", file=sys.stderr)
        return 130
    took = time.monotonic() - start
    total = sum(r for _, r in rounds)
    # The pids let a test (or a user) pick this run's workers out of a system-wide recording.
    pids = " ".join(str(pid) for pid, _ in rounds)
    print(
        f"workload: {len(rounds)} procs (pids {pids}), {args.mb} MiB regions, {took:.1f} s: "
        f"{total} rounds ({total * args.mb / 1024:.1f} GiB mapped and freed)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
