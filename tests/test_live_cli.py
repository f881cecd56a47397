"""`zlperf top` / `zlperf exporter` options and missing pieces: one line each, before tracefs is touched (no root
needed for most; nothing here traces)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from livetools import ENV, REPO
from zlperf.live.exporter import parse_listen
from zlperf.errors import ZlperfError


def _zlperf(*args: str, code: str = "") -> subprocess.CompletedProcess:
    argv = [sys.executable, "-c", code + f"from zlperf.cli import main; raise SystemExit(main({list(args)!r}))"]
    return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=ENV, timeout=120)


def test_missing_prometheus_client_is_one_line():
    proc = _zlperf("exporter", code="import sys; sys.modules['prometheus_client'] = None; ")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1 and "pip install 'zlperf[live]'" in proc.stderr


@pytest.mark.parametrize("args,says", [
    (["top", "--by", "zone,holders"], "--by 'zone,holders': choose from zone, caller, cpu, task, holder"),
    (["top", "-i", "0"], "argument -i/--interval: '0': give seconds above 0"),
    (["top", "-i", "nan"], "argument -i/--interval: 'nan': give seconds above 0"),
    (["top", "-n", "0"], "argument -n/--count: '0': give 1 or more"),
    (["top", "--profile", "stock", "--recipe", "x.yaml"], "not allowed with argument"),
    (["exporter", "--listen", "127.0.0.1"], "--listen '127.0.0.1': give HOST:PORT"),
    (["exporter", "--listen", "127.0.0.1:70000"], "give HOST:PORT"),
    (["exporter", "--max-callers", "-1"], "--max-callers -1: give 0 or more"),
])
def test_bad_options_are_one_line(args, says):
    proc = _zlperf(*args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert says in proc.stderr.strip().splitlines()[-1], proc.stderr


def test_listen_addresses():
    assert parse_listen("127.0.0.1:9466") == ("127.0.0.1", 9466)
    assert parse_listen("[::1]:0") == ("::1", 0)
    assert parse_listen("0.0.0.0:9466") == ("0.0.0.0", 9466)
    for bad in ("9466", ":9466", "host:", "host:port", "[::1]", "127.0.0.1:-1"):
        with pytest.raises(ZlperfError):
            parse_listen(bad)


def test_help_shows_examples():
    for cmd in ("top", "exporter"):
        proc = _zlperf(cmd, "-h")
        assert proc.returncode == 0 and "examples:" in proc.stdout, proc.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="checks what a user without root is told")
def test_without_root_one_line():
    proc = _zlperf("top", "--profile", "stock", "-n", "1")
    assert proc.returncode == 2 and "needs root" in proc.stderr and "Traceback" not in proc.stderr
