"""Recording: preflight checks, then trace-cmd record, a tracefs instance + trace-cmd extract, or perf.

Modules by concept: ``options`` (what was asked), ``preflight`` (checks that touch nothing), ``recorder``
(the whole recording), ``session`` (messages, the command, waiting), the backends ``trace_cmd``,
``instance`` and ``perf``, ``signals`` (stop signals), ``tracefs``, and ``btf`` + ``zonenames``
(naming zone locks on stock kernels).
"""

from __future__ import annotations

from zlperf.record.options import RecordOptions, kallsyms_path
from zlperf.record.preflight import Preflight, preflight, trace_cmd_refused
from zlperf.record.recorder import record

__all__ = ["RecordOptions", "Preflight", "preflight", "record", "trace_cmd_refused", "kallsyms_path"]
