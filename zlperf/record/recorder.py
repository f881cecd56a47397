"""Recording a recipe from start to end: mount tracefs if needed, name zone locks, run one backend, clean up.

Nothing is touched before every check passed; whatever the recorder sets up (an instance, a tracefs
mount, the bpftrace side program, its private output folder) is undone on success, errors, Ctrl-C and
SIGTERM; what a SIGKILL leaves, the next recording repairs (:mod:`zlperf.record.guard`).
"""

from __future__ import annotations

__all__ = ["record"]

import shlex
import sys
from typing import Optional, TextIO

from zlperf.errors import RecordError, ZlperfError, warn
from zlperf.record.guard import RecorderState, dead_instances, repair_leftovers
from zlperf.record.instance import record_instance
from zlperf.record.options import RecordOptions
from zlperf.record.perf import record_perf
from zlperf.record.preflight import Preflight, check_kernel, preflight
from zlperf.record.session import Session
from zlperf.record.trace_cmd import record_trace_cmd
from zlperf.record.zonenames import ZoneLockWatcher, side_channel_unavailable, zone_layout
from zlperf.zonelocks import sidecar_path, write_zone_locks


class _Recorder:
    """What surrounds a backend's recording: the tracefs mount and the zone-naming side program."""

    def __init__(self, s: Session):
        self.s = s
        self.mounted = False

    # -- tracefs mount
    def mount(self) -> None:
        """Mount tracefs where trace-cmd would when it is not mounted (preflight said so), then check the kernel."""
        s = self.s
        if not s.pf.mount_needed:
            return
        root = str(s.pf.tracefs.root)
        s.say(s.pf.notes[0])
        res = s.run_cmd(["mount", "-t", "tracefs", "nodev", root])
        if res.returncode != 0:
            raise RecordError(f"mounting tracefs at {root} failed: {(res.stderr or '').strip() or res.returncode}")
        self.mounted = not s.opts.dry_run
        if not s.opts.dry_run:
            check_kernel(s.recipe, s.pf.tracefs, s.opts.backend_name)

    def unmount(self) -> None:
        """Unmount what :meth:`mount` mounted."""
        s = self.s
        if self.mounted or (s.opts.dry_run and s.pf.mount_needed):
            res = s.run_cmd(["umount", str(s.pf.tracefs.root)])
            self.mounted = False
            if res.returncode != 0:
                warn(f"could not unmount tracefs at {s.pf.tracefs.root}: {(res.stderr or '').strip()}")

    # -- one entry point
    def run(self) -> int:
        """The whole recording; the exit status. Cleans up whatever happens."""
        s = self.s
        try:
            self.mount()
            if s.opts.dry_run:
                for name in dead_instances(s.pf.tracefs.root):
                    s.plan(f"# first: rmdir {s.pf.tracefs.root}/instances/{name}   (left by a killed zlperf record)")
            else:
                s.state = RecorderState()
                s.remember(output=str(s.outputs.final))
                with s.lock.held(s.say, "repair what killed recorders left"):
                    repair_leftovers(s.pf.tracefs.root, s.say)
                s.outputs.make_workdir()
                s.remember(workdir=str(s.outputs.workdir))
            zones = self._zone_names_start()
            try:
                rc = self._record()
            except BaseException:
                if zones is not None:
                    zones.stop()
                raise
            self._zone_names_finish(zones)
            return rc
        finally:
            s.outputs.cleanup()  # partial files of a failed recording; empty after a good one
            if s.state is not None:
                s.state.remove()
            self.unmount()

    def _record(self) -> int:
        s = self.s
        if s.opts.backend_name == "perf":
            return record_perf(s)
        if s.pf.refused:
            return record_instance(s, f"trace-cmd record is refused here ({s.pf.refused})")
        return record_trace_cmd(s)

    # -- zone names (stock kernels): a bpftrace side program reads node and name behind each lock address
    def _zone_names_start(self) -> Optional[ZoneLockWatcher]:
        """Start the side program when the recipe records lock:contention_begin; None when it does not run."""
        s = self.s
        if "lock:contention_begin" not in s.recipe.events:
            return None
        side = sidecar_path(s.opts.output_path)
        why = side_channel_unavailable()
        if why is None:
            try:
                watcher = ZoneLockWatcher(zone_layout())
            except ZlperfError as exc:
                why = str(exc)
        if why is not None:
            warn(f"zone locks will show as addresses: {why}")
            return None
        if s.opts.dry_run:
            s.plan(f"# alongside, stopped with SIGINT after; its zlperf-zone lines go to {side}: "
                   + shlex.join(watcher.argv))
            return None
        try:
            watcher.start()
        except ZlperfError as exc:
            warn(f"zone locks will show as addresses: {exc}")
            return None
        s.say(f"naming zone locks with bpftrace (struct zone .lock at +{watcher.layout.lock_offset}, from BTF)")
        return watcher

    def _zone_names_finish(self, watcher: Optional[ZoneLockWatcher]) -> None:
        s = self.s
        if watcher is None:
            return
        locks = watcher.stop()
        if not s.outputs.final.exists():
            return
        try:
            side = write_zone_locks(s.outputs.final, locks, mode=s.outputs.mode())
        except ZlperfError as exc:
            warn(f"{exc}: the recording is kept; zone locks will show as addresses")
            return
        names = ", ".join(sorted({f"{n}:{z}" for n, z in locks.values()}))
        s.say(f"wrote {side}: {len(locks)} zone lock{'s' if len(locks) != 1 else ''} named{' (' + names + ')' if names else ''}")


def record(
    opts: RecordOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr, checked: Optional[Preflight] = None
) -> int:
    """Check, then record ``opts.recipe``; returns the exit status (the backend's, or the command's).

    Raises :class:`~zlperf.errors.RecordError` (one line) when something is missing; tracefs is then untouched.
    ``checked`` is a :func:`preflight` result to use instead of checking again.
    """
    pf = checked or preflight(opts)
    s = Session(opts, pf, out, err)
    for note in pf.notes[1 if pf.mount_needed else 0:]:
        s.say(note)
    return _Recorder(s).run()
