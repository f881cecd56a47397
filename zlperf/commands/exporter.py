"""``zlperf exporter``: serve zone->lock contention as Prometheus / OpenMetrics metrics, traced live."""

from __future__ import annotations

__all__ = ["register", "run"]

import argparse
import sys

_EXAMPLES = """examples:
  sudo zlperf exporter                                  # http://127.0.0.1:9466/metrics, default profile
  sudo zlperf exporter --profile stock --listen 127.0.0.1:9466
  curl -s 127.0.0.1:9466/metrics | grep zone_lock       # what Prometheus scrapes
  sudo systemctl enable --now zlperf-exporter           # contrib/zlperf-exporter.service

Every scrape first reads the kernel's ring buffers, so it counts every event traced before it. Metrics:
zlperf_zone_lock_contended_events_total{zone}, zlperf_zone_lock_acquisitions_total{zone} (patched kernels),
zlperf_zone_lock_wait_seconds{zone,caller} (log2 buckets, exact _sum), zlperf_zone_lock_hold_seconds{zone}
(hold-time recipes), zlperf_events_lost_total, and the exporter's own events decoded and CPU seconds.
Listens on loopback unless told otherwise; stops cleanly on SIGTERM (tracefs instance removed).
"""


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``exporter`` subcommand."""
    from zlperf.commands.top import add_recipe_options

    p = sub.add_parser(
        "exporter", help="serve zone->lock contention as Prometheus metrics, traced live",
        description="Trace zone->lock contention live and serve it as Prometheus/OpenMetrics text.",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_recipe_options(p)
    p.add_argument("--listen", default="127.0.0.1:9466", metavar="HOST:PORT",
                   help="address to serve /metrics on (default 127.0.0.1:9466; port 0 picks a free one)")
    p.add_argument("--max-callers", type=int, default=10, metavar="N",
                   help="caller label values before the rest become caller=\"other\" (default 10)")
    p.set_defaults(func=run)


def _say(msg: str) -> None:
    print(f"zlperf: {msg}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM, SIGINT or SIGHUP; 0."""
    from zlperf.commands.top import live_options, live_recipe
    from zlperf.errors import ZlperfError
    from zlperf.extras import require
    from zlperf.live.exporter import parse_listen, serve
    from zlperf.live.session import LiveSession

    if args.max_callers < 0:
        raise ZlperfError(f"--max-callers {args.max_callers}: give 0 or more")
    parse_listen(args.listen)  # a bad address fails before tracefs is touched
    require("prometheus_client", "live")
    recipe = live_recipe(args)
    with LiveSession(recipe, live_options(recipe, 10), prefix="zlperf-exporter", say=_say) as session:
        rc = serve(session, args.listen, args.max_callers, _say)
    _say("tracefs instance removed")
    return rc
