"""`jobtrail metrics`, the queue-wide exporter, and the endpoints of `worker` and `relay`
(``--metrics-port``). prometheus_client is loaded only by a process that serves metrics.

Each endpoint is started before the process does any work: a port in use is one line, exit
status 1, and nothing is claimed, published or read.
"""

from __future__ import annotations

import argparse
import sys
import threading
from typing import TYPE_CHECKING

from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.cli.args import stop_on_signals
from jobtrail.processors.engine.observer import NO_OBSERVER, WorkerObserver

if TYPE_CHECKING:
    from jobtrail.adapters.metrics.server import MetricsServer


def worker_metrics(
    trail: Jobtrail, args: argparse.Namespace
) -> tuple[WorkerObserver, MetricsServer | None]:
    """`worker --metrics-port`: the observer that counts, and its endpoint (with `--relay`,
    the relay's lag too); without the option, no observer and no endpoint."""
    if args.metrics_port is None:
        return NO_OBSERVER, None
    from jobtrail.adapters.metrics.relay import RelayLagCollector
    from jobtrail.adapters.metrics.server import serve
    from jobtrail.adapters.metrics.worker import WorkerMetrics

    metrics = WorkerMetrics()
    if args.relay:
        metrics.registry.register(RelayLagCollector(trail.engine, args.topic))
    return metrics, serve(metrics.registry, args.metrics_port, args.metrics_host)


def relay_metrics(trail: Jobtrail, args: argparse.Namespace) -> MetricsServer | None:
    """`relay --metrics-port`: the relay's lag, read from the database at each scrape."""
    if args.metrics_port is None:
        return None
    from jobtrail.adapters.metrics.relay import RelayLagCollector
    from jobtrail.adapters.metrics.server import serve
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(RelayLagCollector(trail.engine, args.topic))
    return serve(registry, args.metrics_port, args.metrics_host)


def cmd_metrics(trail: Jobtrail, args: argparse.Namespace) -> int:
    """Serve the queue-wide gauges until SIGTERM/SIGINT; `--once`: print them and exit.

    The database is read once before the endpoint starts, so a database that cannot be read
    is one line and exit status 1 rather than an exporter that only ever says ``up 0``.
    """
    from jobtrail.adapters.metrics.exporter import QueueCollector
    from jobtrail.adapters.metrics.server import serve
    from prometheus_client import CollectorRegistry, generate_latest

    collector = QueueCollector(trail.engine, args.interval, args.lease_window)
    collector.read()
    registry = CollectorRegistry()
    registry.register(collector)
    if args.once:
        sys.stdout.write(generate_latest(registry).decode())
        return 0
    server = serve(registry, args.port, args.host)
    stopping = threading.Event()
    stop_on_signals(stopping.set)
    try:
        while not stopping.wait(1.0):
            pass
    finally:
        server.stop()
    return 0
