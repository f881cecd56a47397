"""Optional capabilities and the packages they need: one clear line when one is missing.

The core (reading, analysis, ``zlperf report``, the perf script) needs only numpy, pyyaml and
zstandard. Exports, plots, fleet engines and the live exporter each need a library of their own,
installed as a pip extra (``pip install 'zlperf[perfetto]'``, or ``zlperf[all]``).
"""

from __future__ import annotations

__all__ = ["EXTRAS", "require"]

import importlib
from types import ModuleType

from zlperf.errors import ZlperfError

#: extra -> (what needs it, the modules it provides)
EXTRAS = {
    "perfetto": ("zlperf export --perfetto", ("perfetto",)),
    "html": ("zlperf report --html", ("plotly",)),
    "plots": ("zlperf report --plot", ("matplotlib",)),
    "parquet": ("zlperf export --parquet", ("pyarrow",)),
    "duckdb": ("zlperf fleet", ("duckdb",)),
    "spark": ("zlperf fleet --engine spark", ("pyspark",)),
    "live": ("zlperf exporter", ("prometheus_client",)),
}


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or fail with one line saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = EXTRAS.get(extra, ("this command", ()))[0]
        raise ZlperfError(f"{what} needs the Python package {module!r} ({exc}); install it with: "
                          f"pip install 'zlperf[{extra}]' (or pip install {module.split('.')[0]})") from None
