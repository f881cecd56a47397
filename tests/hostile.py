"""Running zlperf on hostile input and checking how it ended (shared by the tests/test_hostile_*.py files).

Each case runs the real CLI in a child process with a time limit and an address-space cap (a safety net
for the machine, well above the 512 MB the cases must stay under), and measures the child's peak RSS
with wait4. A case passes when it ends in either

- one line on stderr (``zlperf: ...``), a non-zero exit, no traceback; or
- exit 0 with a report and a ``zlperf: warning:`` line saying what was lost.

A hang (timeout), a signal (a native crash), a traceback or a peak RSS over the budget fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
#: Peak resident memory any hostile case may use (issue: hostile-input hardening).
MEMORY_BUDGET_MB = 512
#: Address-space cap of the child: numpy and zstd map more than they touch, so this is a backstop
#: that keeps a runaway allocation from taking the machine, not the budget itself.
_ADDRESS_SPACE_CAP = 4 << 30


@dataclass
class Outcome:
    """How one zlperf run ended."""

    argv: list[str]
    returncode: int  #: negative: killed by that signal
    stdout: str
    stderr: str
    peak_rss_mb: float
    seconds: float
    timed_out: bool

    def describe(self) -> str:
        tail = self.stderr.strip().splitlines()[-5:]
        return (f"{' '.join(self.argv)}: rc={self.returncode} rss={self.peak_rss_mb:.0f}MB "
                f"t={self.seconds:.1f}s timeout={self.timed_out}\n  stderr: " + "\n  ".join(tail))


#: Runs the case in a grandchild and reports its rusage. The kernel counts a process's peak RSS from before its
#: exec too (the forking parent's resident pages), so forking the case straight from this test process would
#: charge the test process's own few hundred MB to every case; a small launcher forks it instead.
_LAUNCHER = r"""
import os, resource, sys
cap, report_fd = int(sys.argv[1]), int(sys.argv[2])
pid = os.fork()
if pid == 0:
    os.close(report_fd)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        os.execv(sys.argv[3], sys.argv[3:])
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
os.write(report_fd, b"%d %d" % (os.waitstatus_to_exitcode(status), usage.ru_maxrss))
"""


def run_zlperf(args: Sequence[str], *, timeout: float = 120, stdin: Optional[int] = subprocess.DEVNULL,
               env: Optional[dict] = None, cwd: Optional[str] = None, argv0: Optional[Sequence[str]] = None) -> Outcome:
    """Run ``python3 -m zlperf ARGS`` (or ``argv0 + ARGS``) and measure its own peak RSS with wait4."""
    argv = [*(argv0 or [sys.executable, "-m", "zlperf"]), *map(str, args)]
    full_env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    report_r, report_w = os.pipe()
    start = time.monotonic()
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _LAUNCHER, str(_ADDRESS_SPACE_CAP), str(report_w),
                                 shutil.which(argv[0]) or argv[0], *argv[1:]],
                                stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env, cwd=cwd,
                                start_new_session=True, pass_fds=(report_w,))
    finally:
        os.close(report_w)
    chunks: dict[str, list[bytes]] = {"out": [], "err": []}

    def drain(stream, key: str) -> None:
        for block in iter(lambda: stream.read(65536), b""):
            chunks[key].append(block)

    readers = [threading.Thread(target=drain, args=(proc.stdout, "out"), daemon=True),
               threading.Thread(target=drain, args=(proc.stderr, "err"), daemon=True)]
    for t in readers:
        t.start()
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher and the case (one session)
        except ProcessLookupError:
            pass

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        launcher_status = proc.wait()
    finally:
        timer.cancel()
    with os.fdopen(report_r, "rb") as fh:
        report = fh.read().split()
    returncode, maxrss_kb = (int(report[0]), int(report[1])) if len(report) == 2 else (launcher_status, 0)
    for t in readers:
        t.join(timeout=10)
    text = {k: b"".join(v).decode("utf-8", "replace") for k, v in chunks.items()}
    return Outcome(argv, returncode, text["out"], text["err"], maxrss_kb / 1024,
                   time.monotonic() - start, timed_out.is_set())


def assert_handled(o: Outcome, *, allow_partial: bool = True, budget_mb: float = MEMORY_BUDGET_MB) -> str:
    """Assert the run ended cleanly (see module docstring); returns "error" or "partial"."""
    assert not o.timed_out, "hung: " + o.describe()
    assert o.returncode >= 0, f"killed by signal {-o.returncode}: " + o.describe()
    assert "Traceback" not in o.stderr, "traceback: " + o.describe()
    assert o.peak_rss_mb <= budget_mb, f"peak RSS {o.peak_rss_mb:.0f} MB > {budget_mb} MB: " + o.describe()
    lines = [ln for ln in o.stderr.splitlines() if ln.strip()]
    if o.returncode != 0:
        errors = [ln for ln in lines if not ln.startswith("zlperf: warning:")]
        assert len(errors) == 1 and errors[0].startswith("zlperf: "), "not one error line: " + o.describe()
        return "error"
    assert allow_partial, "accepted hostile input without an error: " + o.describe()
    assert any(ln.startswith("zlperf: warning:") for ln in lines), "exit 0 without a warning: " + o.describe()
    return "partial"
