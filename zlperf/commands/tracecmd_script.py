"""``zlperf tracecmd-script SCRIPT [ARGS]``: run a script written for trace-cmd's ``tracecmd`` module.

``import tracecmd`` inside the script resolves to :mod:`zlperf.tracecmd` (ctypes over the
system's libtracecmd), so upstream-style scripts run unchanged without the SWIG bindings.
"""

from __future__ import annotations

__all__ = ["register", "run_script"]

import argparse
import os
import runpy
import sys
from typing import Sequence

from zlperf.errors import ZlperfError

_EPILOG = """examples:
  zlperf tracecmd-script my_analysis.py trace.dat      # a script that does `import tracecmd`
  zlperf tracecmd-script plugins/tracecmd/zone_lock.py trace.dat --top 5   # options go to the script
"""


def run_script(script: str, args: Sequence[str]) -> int:
    """Run ``script`` as ``__main__`` with ``sys.argv = [script, *args]``; returns its exit status."""
    if not os.path.isfile(script):
        raise ZlperfError(f"{script}: no such script (give the path of a Python file that imports tracecmd)")
    import zlperf.tracecmd as compat

    saved_argv, saved_path = sys.argv[:], sys.path[:]
    saved_mod = sys.modules.get("tracecmd")
    sys.modules["tracecmd"] = compat
    sys.argv = [script, *args]
    # As `python3 SCRIPT` does: the script's own directory first on the import path.
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if code is None:
            return 0
        if isinstance(code, int):
            return code
        print(code, file=sys.stderr)
        return 1
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
        if saved_mod is None:
            sys.modules.pop("tracecmd", None)
        else:
            sys.modules["tracecmd"] = saved_mod
    return 0


def _run(args: argparse.Namespace) -> int:
    rest = list(args.args)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    return run_script(args.script, rest)


def register(subparsers) -> None:
    """Add the ``tracecmd-script`` subcommand."""
    p = subparsers.add_parser(
        "tracecmd-script",
        help="run a script written for trace-cmd's Python `tracecmd` module",
        description="Run a script written for trace-cmd's Python `tracecmd` module: inside it, "
                    "`import tracecmd` is zlperf's ctypes binding over the system's libtracecmd.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("script", help="Python file that does `import tracecmd`")
    p.add_argument("args", nargs=argparse.REMAINDER, help="arguments given to the script (sys.argv[1:])")
    p.set_defaults(func=_run)
