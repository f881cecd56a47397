"""What ``zlperf record`` was asked to do: the recipe plus the command line's overrides, and the file names.

The output file and the files written beside it (kernel symbols for perf, zone names) follow from here.
"""

from __future__ import annotations

__all__ = ["RecordOptions", "kallsyms_path"]

from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from zlperf.recipes import Recipe


@dataclass
class RecordOptions:
    """What to record and how: the recipe plus the command line's overrides."""

    recipe: Recipe
    output: Optional[str] = None  #: -o; default: the recipe's output, else trace.dat / perf.data
    duration: Optional[float] = None  #: --duration; with a command it is a time limit
    backend: Optional[str] = None  #: --backend; default: the recipe's, else trace-cmd
    command: List[str] = field(default_factory=list)  #: what to run while recording (after --)
    dry_run: bool = False

    @property
    def backend_name(self) -> str:
        """The backend in effect."""
        return self.backend or self.recipe.backend or "trace-cmd"

    @property
    def output_path(self) -> Path:
        """The output file in effect."""
        default = "perf.data" if self.backend_name == "perf" else "trace.dat"
        return Path(self.output or self.recipe.output or default)

    @property
    def seconds(self) -> Optional[float]:
        """How long to record: --duration, else (without a command) the recipe's duration, else until stopped."""
        if self.duration is not None:
            return self.duration
        return None if self.command else self.recipe.duration


def kallsyms_path(output: Path) -> Path:
    """Where the perf backend saves /proc/kallsyms: X.data -> X.kallsyms, anything else -> X.kallsyms."""
    name = output.name[: -len(".data")] if output.name.endswith(".data") else output.name
    return output.with_name(name + ".kallsyms")
