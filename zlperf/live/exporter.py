"""``zlperf exporter``: zone->lock contention as Prometheus / OpenMetrics metrics, read live from tracefs.

A custom prometheus_client collector over :class:`~zlperf.live.metrics.LiveTotals`; every scrape first reads
what the kernel has, so a scrape counts every event traced before it. prometheus_client is imported on use.
"""

from __future__ import annotations

__all__ = ["parse_listen", "MetricsServer", "LiveCollector", "serve"]

import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Optional

from zlperf.errors import ZlperfError
from zlperf.extras import require
from zlperf.live.metrics import BOUNDS_NS, LiveTotals
from zlperf.live.session import LiveSession

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

#: How often the exporter adds up an interval when nobody scrapes (bounds the memory of one interval).
FOLD_SECONDS = 1.0


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) -> (host, port); ZlperfError (one line) when it is not one."""
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ZlperfError(f"--listen {text!r}: give HOST:PORT, e.g. 127.0.0.1:9466 (port 0: any free port)")
    return host, int(port)


def _seconds(ns: int) -> float:
    return ns / 1e9


def _child_cpu_seconds(pid: Optional[int]) -> float:
    """utime + stime of a running child (bpftrace), from /proc/PID/stat; 0 when it is gone."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class LiveCollector:
    """A prometheus_client collector: reads the kernel's buffers, adds the interval, yields every family."""

    def __init__(self, session: LiveSession, totals: LiveTotals):
        self.session = session
        self.totals = totals
        self.scrapes = 0

    def fold(self) -> None:
        """Read what is there and add it up (the main loop calls it every FOLD_SECONDS, every scrape does)."""
        with self.session.lock:
            self.totals.add(self.session.take().interval)

    def describe(self) -> list:
        """Nothing: the families depend on the ABI seen, and describing must not read tracefs."""
        return []

    def collect(self) -> Iterator:
        """The metric families, after reading what the kernel has now."""
        core = require("prometheus_client.core", "live")
        with self.session.lock:
            if not self.session.stopped:
                self.fold()
            self.scrapes += 1
            families = list(self._families(core))
        return iter(families)

    def _families(self, core) -> Iterator:
        t = self.totals
        go_float = require("prometheus_client.utils", "live").floatToGoString
        les = [go_float(b / 1e9) for b in BOUNDS_NS] + ["+Inf"]
        contended = core.CounterMetricFamily(
            "zlperf_zone_lock_contended_events", "Contended zone->lock acquisitions traced (stock kernels: "
            "lock:contention_* waits on a zone lock).", labels=["zone"])
        for z in t.zones.values():
            contended.add_metric([z.label], z.contended_events)
        yield contended
        if t.acquisitions:
            acq = core.CounterMetricFamily("zlperf_zone_lock_acquisitions", "zone->lock acquisitions traced.",
                                           labels=["zone"])
            for z in t.zones.values():
                acq.add_metric([z.label], z.acquisitions)
            yield acq
        if t.waits_known:
            wait = core.HistogramMetricFamily(
                "zlperf_zone_lock_wait_seconds", f"Time spun waiting for zone->lock, by zone and locked caller "
                f"(top {t.max_callers} callers, the rest as caller=\"other\").", labels=["zone", "caller"])
            for (zid, caller), h in sorted(t.waits.items(), key=lambda kv: (t.zone_label(kv[0][0]), kv[0][1])):
                wait.add_metric([t.zone_label(zid), caller], list(zip(les, h.cumulative())), _seconds(h.sum_ns))
            yield wait
        if t.holds:
            hold = core.HistogramMetricFamily("zlperf_zone_lock_hold_seconds", "Time zone->lock was held, by zone.",
                                              labels=["zone"])
            for z in t.zones.values():
                hold.add_metric([z.label], list(zip(les, z.hold.cumulative())), _seconds(z.hold.sum_ns))
            yield hold
        yield core.CounterMetricFamily("zlperf_events_lost", "Events the kernel reported lost before zlperf read "
                                       "them (ring buffer overrun).", value=t.lost_events)
        yield core.CounterMetricFamily("zlperf_ring_buffer_gaps", "Ring-buffer gaps whose size the kernel did not "
                                       "store (pages flagged as missed events).", value=t.lost_gaps)
        yield core.CounterMetricFamily("zlperf_exporter_events_decoded", "Trace events zlperf decoded.",
                                       value=t.events)
        cpu = core.CounterMetricFamily("zlperf_exporter_cpu_seconds", "CPU time used by the exporter and its "
                                       "bpftrace side program.", labels=["process"])
        times = os.times()
        cpu.add_metric(["zlperf"], times.user + times.system)
        watcher = self.session.namer.watcher
        proc = watcher.proc if watcher is not None else None
        cpu.add_metric(["bpftrace"], _child_cpu_seconds(proc.pid if proc is not None else None))
        yield cpu
        info = core.GaugeMetricFamily("zlperf_exporter_info", "What the exporter traces (value 1).",
                                      labels=["abi", "profile", "instance", "kernel"])
        source = self.session.source
        info.add_metric([t.abi, t.profile, source.name if source else "", os.uname().release], 1)
        yield info


class MetricsServer:
    """A threaded HTTP server of ``/metrics`` on one address (the one prometheus_client's WSGI app answers)."""

    def __init__(self, host: str, port: int, registry) -> None:
        from socketserver import ThreadingMixIn
        from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

        exposition = require("prometheus_client.exposition", "live")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class _Server(ThreadingMixIn, WSGIServer):
            daemon_threads = True
            address_family = family

        class _Quiet(WSGIRequestHandler):
            def log_message(self, *_args) -> None:  # scrapes are not worth a line each
                pass

        try:
            self.httpd: "WSGIServer" = make_server(host, port, exposition.make_wsgi_app(registry), _Server,
                                                   handler_class=_Quiet)
        except OSError as exc:
            raise ZlperfError(f"cannot listen on {host}:{port}: {exc.strerror}")
        self.host, self.port = host, self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="zlperf-metrics", daemon=True)

    @property
    def url(self) -> str:
        """Where the metrics are."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> None:
        """Serve in a daemon thread."""
        self.thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def serve(session: LiveSession, listen: str, max_callers: int, say: Callable[[str], None]) -> int:
    """Serve metrics until a stop signal; the exit status (0)."""
    prometheus = require("prometheus_client", "live")
    host, port = parse_listen(listen)
    totals = LiveTotals(max_callers)
    collector = LiveCollector(session, totals)
    registry = prometheus.CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server = MetricsServer(host, port, registry)
    try:
        server.start()
        loopback = host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")
        say(f"serving metrics on {server.url} (instance {session.source.name if session.source else '?'})"
            + ("" if loopback else f"; {host} is not loopback: anyone who reaches it can read them"))
        nxt = time.monotonic() + FOLD_SECONDS
        while session.wait(nxt):
            collector.fold()
            nxt += FOLD_SECONDS
            if nxt < time.monotonic():  # fell behind (a slow scrape, a stopped machine): do not catch up in a burst
                nxt = time.monotonic() + FOLD_SECONDS
    finally:
        server.stop()
    say(f"stopped after {collector.scrapes} scrapes")
    return 0
