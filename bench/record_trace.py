"""Record a large real trace.dat on this machine for the read benchmark (kmem page events).

A tracefs instance with kmem:mm_page_alloc / mm_page_free / mm_page_pcpu_drain, a memory churn
workload on every CPU, then ``trace-cmd extract -B``; the instance is always removed afterwards.
Usage: python3 bench/record_trace.py OUT.dat [--buffer-kb N] [--seconds S] [--file-version 6|7]
"""

from __future__ import annotations

__all__ = ["record_kmem_trace", "churn"]

import argparse
import mmap
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

TRACEFS = Path("/sys/kernel/tracing")
EVENTS = ("kmem/mm_page_alloc", "kmem/mm_page_free", "kmem/mm_page_pcpu_drain")


def churn(seconds: float, region_mb: int = 64) -> None:
    """Map, touch and unmap anonymous memory for ``seconds`` (page allocations and frees)."""
    page = mmap.PAGESIZE
    end = time.monotonic() + seconds
    size = region_mb << 20
    while time.monotonic() < end:
        m = mmap.mmap(-1, size)
        view = memoryview(m)
        for off in range(0, size, page):  # one write per page faults it in
            view[off] = 1
        view.release()
        m.close()


def _wait_full(inst: Path, target_kb: int, deadline: float) -> None:
    """Return when every CPU's buffer holds about ``target_kb`` or at the deadline."""
    while time.monotonic() < deadline:
        try:
            text = (inst / "buffer_total_size_kb").read_text()
            total = int(text.split()[0])
        except (OSError, ValueError):
            total = 0
        used = 0
        for cpu_dir in sorted((inst / "per_cpu").glob("cpu*")):
            for line in (cpu_dir / "stats").read_text().splitlines():
                if line.startswith("bytes:"):
                    used += int(line.split()[1])
        if total and used >= 0.97 * total * 1024:
            return
        time.sleep(0.5)


def record_kmem_trace(out: str, buffer_kb: int = 65536, seconds: float = 5.0, file_version: int = 7,
                      overwrite: bool = False, name: str = "zlperf_bench") -> Path:
    """Record the kmem page events into ``out``; returns its path. Needs root and tracefs."""
    inst = TRACEFS / "instances" / name
    if inst.exists():
        inst.rmdir()
    inst.mkdir()
    try:
        (inst / "buffer_size_kb").write_text(str(buffer_kb))
        (inst / "options" / "overwrite").write_text("1" if overwrite else "0")
        for ev in EVENTS:
            (inst / "events" / ev / "enable").write_text("1")
        (inst / "tracing_on").write_text("1")
        ncpu = os.cpu_count() or 1
        procs = [mp.Process(target=churn, args=(seconds,)) for _ in range(ncpu)]
        for p in procs:
            p.start()
        if not overwrite:
            _wait_full(inst, buffer_kb, time.monotonic() + seconds)
        for p in procs:
            p.join()
        (inst / "tracing_on").write_text("0")
        cmd = ["trace-cmd", "extract", "-B", name, "-o", str(out)]
        if file_version == 6:
            cmd[2:2] = ["--file-version", "6"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    finally:
        try:
            (inst / "tracing_on").write_text("0")
        except OSError:
            pass
        for _ in range(20):  # rmdir fails with EBUSY while a reader still holds a file open
            try:
                inst.rmdir()
                break
            except OSError:
                time.sleep(0.2)
    return Path(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--buffer-kb", type=int, default=65536, help="per-CPU ring buffer size (KiB)")
    ap.add_argument("--seconds", type=float, default=5.0, help="longest churn time")
    ap.add_argument("--file-version", type=int, default=7, choices=(6, 7))
    ap.add_argument("--overwrite", action="store_true", help="ring buffer overwrite mode (gaps, missed events)")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    path = record_kmem_trace(args.out, args.buffer_kb, args.seconds, args.file_version, args.overwrite)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
