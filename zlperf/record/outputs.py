"""The files a recording writes: OUT, and beside it OUT.zones.json and (perf) OUT.kallsyms.

All are checked before anything runs (no symlink planted at any of them, the folder takes a new file).
The backend writes into a private folder beside OUT; the finished file is renamed into place, so a link
or a partial file never receives the data, and a failed recording leaves no OUT.cpuN or temporary file.
"""

from __future__ import annotations

__all__ = ["WORKDIR_PREFIX", "Outputs", "is_workdir_name"]

import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import List, Optional

from zlperf.errors import RecordError, ZlperfError
from zlperf.record.options import RecordOptions, kallsyms_path
from zlperf.safeio import check_output
from zlperf.zonelocks import sidecar_path

#: The private folder's name starts with this (after ".OUTNAME"), so a later run can recognise one left behind.
WORKDIR_PREFIX = ".zlperf-"


def is_workdir_name(name: str) -> bool:
    """True for the name of a private folder :class:`Outputs` makes (``.OUT.zlperf-XXXX``)."""
    return bool(re.fullmatch(r"\..+\.zlperf-[A-Za-z0-9_]{6,}", name))


class Outputs:
    """Where one recording's files go, and the private folder the backend writes into."""

    def __init__(self, opts: RecordOptions):
        self.final = opts.output_path  #: OUT, as the user named it
        self.sidecar: Optional[Path] = (
            sidecar_path(self.final) if "lock:contention_begin" in opts.recipe.events else None)
        self.kallsyms: Optional[Path] = kallsyms_path(self.final) if opts.backend_name == "perf" else None
        self.workdir: Optional[Path] = None

    @property
    def folder(self) -> Path:
        """The folder OUT goes into."""
        return self.final.parent if str(self.final.parent) else Path(".")

    def paths(self) -> List[Path]:
        """Every file this recording may write."""
        return [p for p in (self.final, self.sidecar, self.kallsyms) if p is not None]

    def check(self, probe: bool = True) -> None:
        """RecordError (one line) unless every output can be written: before the command runs, not after.

        Refuses symlinks (a planted link would redirect the write), directories, missing or read-only
        folders; with ``probe``, also creates and removes a file there (/proc and full filesystems
        pass the permission checks yet take no new file).
        """
        what = {self.final: "recording", self.sidecar: "zone-lock sidecar", self.kallsyms: "kernel symbols"}
        for p in self.paths():
            try:
                check_output(p, what[p])
            except ZlperfError as exc:
                raise RecordError(str(exc)) from None
        if not probe:
            return
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{self.final.name}.", suffix=".probe", dir=self.folder)
        except OSError as exc:
            raise RecordError(f"{self.final}: cannot create files in {self.folder} ({exc.strerror}); "
                              "choose another -o") from None
        os.close(fd)
        os.unlink(tmp)

    def make_workdir(self) -> Path:
        """Create the private folder (mode 0700) beside OUT; the backend writes ``work_file`` in it."""
        try:
            self.workdir = Path(tempfile.mkdtemp(prefix=f".{self.final.name}{WORKDIR_PREFIX}", dir=self.folder))
        except OSError as exc:
            raise RecordError(f"{self.final}: cannot create a folder in {self.folder} ({exc.strerror})") from None
        return self.workdir

    @property
    def work_file(self) -> Path:
        """The file the backend writes (OUT's name inside the private folder)."""
        assert self.workdir is not None, "make_workdir() first"
        return self.workdir / self.final.name

    def commit(self, done: Optional[Path] = None) -> None:
        """Rename the finished file (``work_file`` unless ``done``) to OUT; a link planted meanwhile is replaced,
        never followed."""
        src = done or self.work_file
        if not src.is_file():
            raise RecordError(f"{self.final}: the recorder wrote no file")
        try:
            os.replace(src, self.final)
        except OSError as exc:
            raise RecordError(f"{self.final}: cannot move the recording into place ({exc.strerror}); "
                              f"it is in {src}") from None

    def mode(self) -> int:
        """Permission bits of the finished recording (files beside it get the same: kallsyms defeat KASLR)."""
        try:
            return stat.S_IMODE(os.stat(self.final).st_mode)
        except OSError:
            return 0o600

    def cleanup(self) -> None:
        """Remove the private folder and whatever partial files are still in it."""
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
