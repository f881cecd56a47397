"""The kernel's tracefs: where it is mounted, which events and clocks it has, and zlperf's own instances.

Event formats are read once per process; every write goes through :class:`Instance`, which only ever
writes inside its own ``instances/NAME`` folder and prints instead of writing under ``--dry-run``.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MOUNT", "Tracefs", "Instance", "find_tracefs", "live_event_format", "event_format_here",
           "write_kernel_file"]

import errno
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional

from zlperf.errors import RecordError
from zlperf.formats import EventFormat, parse_event_format
from zlperf.recipes.known_events import known_format

if TYPE_CHECKING:
    from zlperf.recipes.model import Recipe

#: Where trace-cmd mounts tracefs when nothing else has (and where Linux >= 4.1 puts it).
DEFAULT_MOUNT = Path("/sys/kernel/tracing")


def write_kernel_file(path: Path, value: str, truncate: bool = False) -> None:
    """Write ``value`` to a tracefs or /proc/sys file in one write(2), as ``echo`` would; OSError on refusal.

    ``truncate`` (O_TRUNC) replaces the content of filter-like files; tracefs and sysctl ignore it elsewhere.
    """
    fd = os.open(path, os.O_WRONLY | (os.O_TRUNC if truncate else 0))
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def find_tracefs(mounts: str = "/proc/mounts") -> Optional[Path]:
    """The tracefs mount point from ``mounts``, or None when tracefs is not mounted.

    A tracefs mount wins; older systems only have ``debugfs`` with tracing/ inside it.
    """
    try:
        with open(mounts) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    debugfs = None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        # /proc/mounts escapes spaces in paths as \040.
        where, fstype = parts[1].replace("\\040", " "), parts[2]
        if fstype == "tracefs":
            return Path(where)
        if fstype == "debugfs" and debugfs is None and Path(where, "tracing", "events").is_dir():
            debugfs = Path(where, "tracing")
    return debugfs


class Tracefs:
    """A mounted tracefs (read side): events, formats, clocks, instances."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._formats: Dict[str, Optional[EventFormat]] = {}

    def __repr__(self) -> str:
        return f"Tracefs({str(self.root)!r})"

    def readable(self) -> bool:
        """True when this process may list events (root, or tracefs opened up to it)."""
        return os.access(self.root / "events", os.R_OK | os.X_OK)

    def writable(self) -> bool:
        """True when this process may create instances (needs root or CAP_SYS_ADMIN-like access)."""
        return os.access(self.root / "instances", os.W_OK | os.X_OK)

    def event_dir(self, event: str) -> Path:
        """``events/SYS/NAME`` of ``SYS:NAME``."""
        system, name = event.split(":", 1)
        return self.root / "events" / system / name

    def has_event(self, event: str) -> bool:
        """True when the running kernel has the tracepoint ``SYS:NAME``."""
        return (self.event_dir(event) / "format").is_file()

    def event_format(self, event: str) -> Optional[EventFormat]:
        """The live format of ``SYS:NAME``, or None when the kernel lacks it or it cannot be read."""
        if event not in self._formats:
            fmt = None
            try:
                text = (self.event_dir(event) / "format").read_text()
                fmt = parse_event_format(text, system=event.split(":", 1)[0])
            except (OSError, ValueError):
                pass
            self._formats[event] = fmt
        return self._formats[event]

    def clocks(self) -> List[str]:
        """Trace clocks this kernel offers (``trace_clock``, the selected one in brackets)."""
        try:
            text = (self.root / "trace_clock").read_text()
        except OSError:
            return []
        return [c.strip("[]") for c in text.split()]

    def instances(self) -> List[str]:
        """Names of the existing tracefs instances."""
        try:
            return sorted(p.name for p in (self.root / "instances").iterdir())
        except OSError:
            return []


@lru_cache(maxsize=1)
def _live() -> Optional[Tracefs]:
    root = find_tracefs()
    if root is None:
        return None
    tfs = Tracefs(root)
    return tfs if tfs.readable() else None


def live_event_format(event: str) -> Optional[EventFormat]:
    """The running kernel's format of ``SYS:NAME`` if tracefs is mounted and readable, else None."""
    tfs = _live()
    return tfs.event_format(event) if tfs is not None else None


def event_format_here(event: str) -> Optional[EventFormat]:
    """The running kernel's format of ``SYS:NAME`` when it has the event, else zlperf's built-in table's."""
    return live_event_format(event) or known_format(event)


class Instance:
    """A tracefs instance that zlperf creates, configures and removes.

    With ``dry_run`` every operation is printed through ``say`` (as the shell command that would do it)
    and nothing is touched.
    """

    def __init__(self, tracefs: Tracefs, name: str, dry_run: bool = False, say: Callable[[str], None] = print):
        self.tracefs = tracefs
        self.name = name
        self.path = tracefs.root / "instances" / name
        self.dry_run = dry_run
        self.say = say

    def create(self) -> None:
        """mkdir the instance; an existing one of the same name is an error (never reuse someone's)."""
        if self.dry_run:
            self.say(f"mkdir {self.path}")
            return
        try:
            os.mkdir(self.path)
        except FileExistsError:
            raise RecordError(f"{self.path} already exists: another zlperf is recording; remove it with rmdir if stale")
        except OSError as exc:
            raise RecordError(f"cannot create tracefs instance {self.path}: {exc.strerror}")

    def write(self, rel: str, value: str) -> None:
        """Write ``value`` to the instance file ``rel``; a refusal names the file and the kernel's reason."""
        target = self.path / rel
        if self.dry_run:
            self.say(f"echo {_shell_quote(value)} > {target}")
            return
        try:
            write_kernel_file(target, value, truncate=True)
        except OSError as exc:
            detail = self._error_log_tail() if exc.errno == errno.EINVAL else ""
            raise RecordError(f"writing {value!r} to {target} failed: {exc.strerror}{detail}")

    def configure(self, recipe: "Recipe") -> None:
        """Set up the (stopped) instance as ``recipe`` says: buffer size, clock, stacks, filters, events.

        Tracing stays off; the caller turns ``tracing_on`` on when its readers are ready.
        """
        self.write("tracing_on", "0")
        if recipe.buffer_size_kb:
            self.write("buffer_size_kb", str(recipe.buffer_size_kb))
        if recipe.clock:
            self.write("trace_clock", recipe.clock)
        if recipe.stacks:
            self.write("options/stacktrace", "1")
        for ev in recipe.events:
            sysname, evname = ev.split(":", 1)
            if ev in recipe.filters:
                self.write(f"events/{sysname}/{evname}/filter", recipe.filters[ev])
            self.write(f"events/{sysname}/{evname}/enable", "1")

    def _error_log_tail(self) -> str:
        """The kernel's explanation of a rejected write (the last "error: ..." line of error_log)."""
        for log in (self.path / "error_log", self.tracefs.root / "error_log"):
            try:
                lines = [ln for ln in log.read_text().splitlines() if "error: " in ln]
            except OSError:
                continue
            if lines:
                return f" (kernel: {lines[-1].rsplit('error: ', 1)[-1].strip()})"
        return ""

    def remove(self, attempts: int = 20) -> None:
        """rmdir the instance if it is there (trace-cmd extract may already have removed it)."""
        if self.dry_run:
            self.say(f"test ! -d {self.path} || rmdir {self.path}   # trace-cmd extract may have removed it")
            return
        for i in range(attempts):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                # EBUSY while a reader (trace-cmd extract being killed) still holds a per-CPU file.
                if exc.errno != errno.EBUSY or i == attempts - 1:
                    raise RecordError(f"could not remove tracefs instance {self.path}: {exc.strerror}; rmdir it by hand")
                time.sleep(0.1)

    def exists(self) -> bool:
        """True when the instance directory is there."""
        return self.path.is_dir()


def _shell_quote(value: str) -> str:
    """Quote for the dry-run transcript only when needed."""
    if value and all(c.isalnum() or c in "-_.:/=" for c in value):
        return value
    return "'" + value.replace("'", "'\\''") + "'"
