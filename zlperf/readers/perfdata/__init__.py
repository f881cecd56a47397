"""perf.data (``perf record`` output) read natively with numpy: header, records, samples, symbols.

``layout`` parses everything outside the data section, ``records`` walks the data section once, ``index``
keeps what the walk found in a temporary file, ``compressed`` inflates ``perf record -z`` data, ``samples``
decodes columns, ``symbols`` finds kallsyms.
"""

from __future__ import annotations

__all__ = ["PerfDataReader", "PERF_MAGIC", "read_header", "find_kallsyms", "kallsyms_candidates"]

from zlperf.readers.perfdata.layout import PERF_MAGIC, read_header
from zlperf.readers.perfdata.reader import PerfDataReader
from zlperf.readers.perfdata.symbols import find_kallsyms, kallsyms_candidates
