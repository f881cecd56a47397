"""Rules about a recording that every reader applies the same way: CPU numbers, CPU stats, default buffer.

Kept in one place so that the fast reader, the libtracecmd reader and the perf.data reader cannot
disagree on what a file means.
"""

from __future__ import annotations

__all__ = ["MAX_CPUS", "STACK_CELLS", "parse_cpustats", "default_buffer", "plausible_cpu_count"]

from typing import Callable, Optional, Sequence

from zlperf.events import CpuStats

#: Largest CPU count Linux builds for (CONFIG_NR_CPUS is at most 8192, x86's MAXSMP): a file
#: claiming more is damaged, and CPU ids at or above it are not CPUs.
MAX_CPUS = 8192

#: Cells (8 bytes each) one batch's kernel_stack ``caller`` matrix may have (stacks x the deepest):
#: real stacks are tens of frames; a few damaged record lengths must not make it gigabytes.
STACK_CELLS = 16 << 20

_CPUSTAT_KEYS = {"entries": "entries", "overrun": "overrun", "commit overrun": "commit_overrun",
                 "dropped events": "dropped_events", "read events": "read_events"}


def plausible_cpu_count(n: int) -> bool:
    """Whether ``n`` CPUs is a count a recording can have."""
    return 0 < n <= MAX_CPUS


def parse_cpustats(text: str) -> dict[int, CpuStats]:
    """``CPU: N`` blocks of ``key: value`` lines, as the kernel's per_cpu/cpuN/stats prints them.

    trace-cmd saves one block per CPU (CPUSTAT options; libtracecmd hands them back joined, an
    instance's after a ``Buffer: NAME`` line). A later block for the same CPU replaces the
    earlier one, so an instance recording (``trace-cmd extract -B``) shows its own buffer's numbers.
    """
    out: dict[int, CpuStats] = {}
    cur: Optional[CpuStats] = None
    for line in text.splitlines():
        key, _, val = line.partition(":")
        key, val = key.strip(), val.strip()
        if key == "CPU":
            cur = None
            if val.isdigit() and int(val) < MAX_CPUS:
                cur = out[int(val)] = CpuStats(int(val))
        elif cur is not None and key in _CPUSTAT_KEYS and val.isdigit():
            setattr(cur, _CPUSTAT_KEYS[key], int(val))
    return out


def default_buffer(names: Sequence[str], has_data: Callable[[str], bool]) -> str:
    """The buffer a reader reads when asked for the default one (``""``).

    ``trace-cmd extract -B NAME`` stores an empty top buffer beside the instance: when the top
    buffer holds nothing and exactly one instance holds data, that instance is what the user
    recorded, so it stands for the default.
    """
    if "" in names and has_data(""):
        return ""
    full = [name for name in names if name and has_data(name)]
    return full[0] if len(full) == 1 else ""
