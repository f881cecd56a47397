#!/usr/bin/env bash
# Install zlperf and what it needs on Debian 12 (as root or with sudo). Safe to run again.
#   apt:  trace-cmd (record/extract/report), libtracecmd1 + libtraceevent1 (the libtracecmd reader),
#         linux-perf (perf backend, perf script), bpftrace (independent live counts in tests, and
#         naming zone locks on stock kernels), pahole (an independent check of zlperf's BTF reading),
#         python3-numpy/yaml/zstandard (so perf's embedded /usr/bin/python3 can import zlperf's deps)
#         chromium (headless: the HTML report is tested in a real browser), openjdk-17-jre-headless (Spark's JVM),
#         gcc + libc6-dev (pip builds zlperf's native ring-buffer page walker; without them zlperf walks in numpy)
#   pip:  zlperf itself (editable, from this checkout) with every optional extra (perfetto, plotly, matplotlib,
#         pyarrow, duckdb, pyspark, prometheus_client) and, for the tests, pytest + hypothesis
set -euo pipefail
cd "$(dirname "$0")"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

APT_PACKAGES="trace-cmd libtracecmd1 libtraceevent1 linux-perf bpftrace pahole
  python3 python3-pip python3-venv python3-numpy python3-yaml python3-zstandard
  chromium openjdk-17-jre-headless gcc libc6-dev"
missing=$(for p in $APT_PACKAGES; do dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || echo "$p"; done)
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

PY=${PYTHON:-python3}
extras="test,all"
if "$PY" -m pip install -q -e ".[$extras]" 2>/tmp/zlperf-pip.err; then
  :
elif grep -q externally-managed /tmp/zlperf-pip.err; then
  # Debian's own python3 (PEP 668): its numpy/yaml/zstandard come from apt above.
  $SUDO apt-get install -y -qq python3-pytest python3-hypothesis >/dev/null
  $SUDO "$PY" -m pip install -q --break-system-packages -e ".[all]"
else
  cat /tmp/zlperf-pip.err >&2
  exit 1
fi
echo "zlperf installed: $(command -v zlperf || echo "$PY -m zlperf")"
