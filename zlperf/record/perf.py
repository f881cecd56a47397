"""The ``perf record`` backend: tracepoints system-wide with call chains into perf.data, plus OUT.kallsyms.

perf.data carries no kernel symbol table, so a copy of /proc/kallsyms is kept beside it for
``zlperf report --kallsyms`` (found automatically by name).
"""

from __future__ import annotations

__all__ = ["perf_argv", "record_perf"]

import os
import shlex
import signal
import subprocess
from pathlib import Path
from typing import List

from zlperf.errors import RecordError, ZlperfError, warn
from zlperf.record.options import kallsyms_path
from zlperf.record.preflight import PERF_CLOCKS
from zlperf.record.session import Session
from zlperf.record.signals import StopSignals, die_with_parent, send_signal
from zlperf.safeio import atomic_write


def perf_argv(s: Session) -> List[str]:
    """The ``perf record`` command line for the session's recipe, output and command."""
    r = s.recipe
    popts = r.backend_options.get("perf", {})
    argv = [s.pf.tool, "record", "-a", "-o", str(s.target)]
    if r.stacks:
        argv.append("-g")
        if popts.get("kernel_callchains_only"):
            argv.append("--kernel-callchains")
    if r.clock in PERF_CLOCKS:
        argv += ["-k", PERF_CLOCKS[r.clock]]
    pages = popts.get("mmap_pages")
    if pages is None and r.buffer_size_kb:
        # The recipe's per-CPU buffer, in pages, rounded up to the power of two perf requires.
        want = max(1, r.buffer_size_kb * 1024 // os.sysconf("SC_PAGE_SIZE"))
        pages = 1 << (want - 1).bit_length()
    if pages:
        argv += ["-m", str(pages)]
    for ev in r.events:
        argv += ["-e", ev]
        if ev in r.filters:
            argv += ["--filter", r.filters[ev]]
    if s.opts.command:
        argv += ["--", *s.opts.command]
    return argv


def record_perf(s: Session) -> int:
    """Record with ``perf record -a``; the exit status (the command's, or 0 when stopped by us)."""
    argv = perf_argv(s)
    syms = kallsyms_path(s.outputs.final)
    s.say(f"recording with perf record (perf {s.pf.tool_version}){s.until()}; kernel symbols go to {syms}")
    if s.opts.dry_run:
        s.plan(shlex.join(argv) + s.dry_wait_note())
        s.plan(f"cp /proc/kallsyms {shlex.quote(str(syms))}")
        return 0
    # If zlperf is killed, perf gets the SIGINT that makes it finish its file.
    proc = subprocess.Popen(argv, preexec_fn=die_with_parent(signal.SIGINT, ignore_sigpipe=True))
    # perf record finishes its file on SIGINT and SIGTERM alike; forward what we got.
    with StopSignals(lambda sig: send_signal(proc, signal.SIGINT if sig == signal.SIGHUP else sig)) as sigs:
        rc = s.wait(proc, sigs, on_deadline=lambda: send_signal(proc, signal.SIGINT))
        # perf re-raises the SIGINT/SIGTERM that stopped it once its file is written.
        stopped_by_us = sigs.stopped or s.stop_reason == "duration"
        if rc != 0 and not (stopped_by_us and rc in (-signal.SIGINT, -signal.SIGTERM) and s.target.exists()):
            raise RecordError(f"perf record failed with status {rc} (its message is above)")
        s.outputs.commit()
        _save_kallsyms(syms, s.outputs.mode())
    s.done(sigs)
    return 0 if stopped_by_us else rc


def _save_kallsyms(dest: Path, mode: int) -> None:
    """perf.data carries no kallsyms: keep a copy beside it (zlperf report --kallsyms), readable by those who
    may read the recording (``mode``: the addresses defeat KASLR). A failure costs the names, not the recording."""
    try:
        text = Path("/proc/kallsyms").read_text()
    except OSError as exc:
        warn(f"could not read /proc/kallsyms ({exc.strerror}): callers will stay numeric")
        return
    if text.startswith("0000000000000000 "):
        warn("/proc/kallsyms shows zero addresses (kernel.kptr_restrict): callers will stay numeric")
    try:
        atomic_write(dest, text, "kernel symbols", mode=mode)
    except ZlperfError as exc:
        warn(f"{exc}: the recording is kept; callers will stay numeric unless you give --kallsyms a copy "
             "of /proc/kallsyms taken before the next reboot")
