"""The one compiled part, zlperf's ring-buffer page walker (zlperf/readers/tracedat/_pagewalk.c).

Everything else is in pyproject.toml. ``optional=True``: without a C compiler the install still
succeeds and zlperf walks pages in numpy (slower, the same results).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("zlperf.readers.tracedat._pagewalk", ["zlperf/readers/tracedat/_pagewalk.c"],
                             extra_compile_args=["-O2", "-fno-strict-aliasing"], optional=True)])
