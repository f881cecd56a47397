"""Helpers of the live tests (zlperf top, the exporter): workers released on cue, zlperf in a subprocess with its
stderr collected, tracefs instances and child processes of one pid, Prometheus text scraped over HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Optional

TRACEFS = Path("/sys/kernel/tracing")
REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}

#: A churn worker that waits for a line on stdin before it starts and stops at the next line (between rounds).
WORKER = r"""
import os, select, sys
from zlperf.workload import churn
os.sched_setaffinity(0, {int(sys.argv[1]) % os.cpu_count()})
with open("/proc/self/comm", "w") as f:
    f.write("zlperf-churn")
sys.stdin.readline()
while not select.select([sys.stdin], [], [], 0)[0]:
    churn(0.2, 64)
"""


class Workers:
    """Churn workers, one per CPU, started before tracing and released on cue (their pids known in advance)."""

    def __init__(self, n: int = 2):
        self.procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(i)], stdin=subprocess.PIPE, text=True,
                                       cwd=REPO, env=ENV) for i in range(n)]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def _say(self) -> None:
        for p in self.procs:
            if p.poll() is None and p.stdin is not None:
                p.stdin.write("\n")
                p.stdin.flush()

    def go(self) -> None:
        self._say()

    def stop(self, timeout: float = 120) -> None:
        """Ask them to stop after their current round and wait until they exited (and are reaped)."""
        self._say()
        for p in self.procs:
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()


class Zlperf:
    """``python3 -m zlperf ARGS`` with stderr collected line by line (and stdout, unless given a file)."""

    def __init__(self, *args: str, stdout=subprocess.PIPE):
        self.proc = subprocess.Popen([sys.executable, "-m", "zlperf", *args], stdout=stdout, stderr=subprocess.PIPE,
                                     text=True, cwd=REPO, env=ENV)
        self.err: list[str] = []
        self.out: list[str] = []
        self._threads = [threading.Thread(target=self._collect, args=(self.proc.stderr, self.err), daemon=True)]
        if stdout is subprocess.PIPE:
            self._threads.append(threading.Thread(target=self._collect, args=(self.proc.stdout, self.out),
                                                  daemon=True))
        for t in self._threads:
            t.start()

    @staticmethod
    def _collect(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for(self, pattern: str, timeout: float = 180) -> re.Match:
        """The first stderr line matching ``pattern``; fails if zlperf exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.err):
                m = re.search(pattern, line)
                if m:
                    return m
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the reader threads finish
                raise AssertionError(f"zlperf exited ({self.proc.returncode}) before {pattern!r}: {''.join(self.err)}")
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} from zlperf within {timeout:g} s: {''.join(self.err)}")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def finish(self, timeout: float = 300) -> int:
        rc = self.proc.wait(timeout=timeout)
        for t in self._threads:
            t.join(timeout=10)
        return rc

    def stderr(self) -> str:
        return "".join(self.err)

    def stdout(self) -> str:
        return "".join(self.out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def instance(name: str) -> Path:
    return TRACEFS / "instances" / name


def tracing_on(name: str) -> bool:
    try:
        return (instance(name) / "tracing_on").read_text().strip() == "1"
    except OSError:
        return False


def wait_until(check, timeout: float = 180, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def children(pid: int) -> dict[int, str]:
    """pid -> comm of the processes whose parent is ``pid``."""
    out = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        m = re.search(r"^PPid:\s*(\d+)", text, re.M)
        if m and int(m.group(1)) == pid:
            out[int(status.parent.name)] = re.search(r"^Name:\s*(.*)$", text, re.M).group(1)
    return out


def alive(pid: int) -> bool:
    """Running (a zombie left for its reaper counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def scrape(url: str, accept: Optional[str] = None) -> str:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(req, timeout=60) as resp:
        assert resp.status == 200
        return resp.read().decode()
