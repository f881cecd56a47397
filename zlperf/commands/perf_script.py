"""``zlperf perf-script``: print the path of the installed perf script for ``perf script -s``.

The script (plugins/perf/zone_lock.py, shipped as zlperf.plugins.perf) runs in perf's own
embedded Python and prints the same report as ``zlperf report`` on the same perf.data.
"""

from __future__ import annotations

__all__ = ["register", "script_path"]

import argparse
from importlib import resources
from pathlib import Path

from zlperf.errors import ZlperfError

_EXAMPLES = """examples:
  perf record -e 'kmem:mm_zone_lock*' -a -g -- CMD          # record (patched kernel)
  perf script -i perf.data -s "$(zlperf perf-script)"        # zlperf's report inside perf
  perf script -i perf.data -s "$(zlperf perf-script)" -- --by cpu,task --top 5 --json
"""


def script_path() -> Path:
    """Absolute path of the ``zone_lock.py`` perf script that belongs to this zlperf.

    Installed: zlperf/plugins/perf/ inside the package. A checkout (editable install or
    ``python -m zlperf`` from the tree): plugins/perf/ beside zlperf/. Looked up from this
    package's own place first, so the script always matches the zlperf that prints it.
    """
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "plugins" / "perf" / "zone_lock.py",
                      package.parent / "plugins" / "perf" / "zone_lock.py"):
        if candidate.is_file():
            return candidate
    try:
        path = Path(str(resources.files("zlperf.plugins.perf") / "zone_lock.py"))
    except ModuleNotFoundError:
        path = package / "plugins" / "perf" / "zone_lock.py"
    if not path.is_file():
        raise ZlperfError(f"{path}: the perf script is missing from this installation (reinstall zlperf)")
    return path.resolve()


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "perf-script", help="print the path of the perf script (perf script -s \"$(zlperf perf-script)\")",
        description="Print the absolute path of zlperf's `perf script -s` script. It prints the same report "
                    "as `zlperf report` on the same perf.data; arguments after `--` are --by, --top, --json.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(script_path())
    return 0
