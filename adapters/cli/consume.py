"""`jobtrail consume`: print the events on the topic, as a consumer in another service sees them.

Without `--group` it reads every partition without a consumer group and commits nothing
(a look at the topic); with `--group` it commits after each printed batch, so the next run
of the same group goes on where this one stopped. With `--metrics-port` it serves its lag
(`jobtrail_consumer_lag_records`, docs/metrics.md) while it runs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import threading
from typing import TYPE_CHECKING, Any

from jobtrail.adapters.cli.args import stop_on_signals
from jobtrail.adapters.cli.logs import summary
from jobtrail.adapters.kafka.codec import RawEvent
from jobtrail.adapters.kafka.consumer import JobEventConsumer
from jobtrail.adapters.kafka.security import KafkaSecurity
from jobtrail.domain.events import Event

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry


def cmd_consume(args: argparse.Namespace) -> int:
    """Needs the broker only: called without a database (`main.Handler(database=False)`).

    TLS and SASL come from the environment (`KafkaSecurity.from_env`), checked before
    anything connects.
    """
    security = KafkaSecurity.from_env()
    # kafka-python logs every failed connection attempt at ERROR; the outcome is ours to say.
    logging.getLogger("kafka").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    show = print_json_line if args.json else print_line
    stopping = threading.Event()
    with contextlib.ExitStack() as stack:  # unwound in reverse: collector, consumer, endpoint
        registry = serve_metrics(args, stack)  # a port in use: one line, nothing read
        consumer = stack.enter_context(
            JobEventConsumer(
                show,
                bootstrap=args.kafka,
                topic=args.topic,
                group=args.group,
                from_beginning=args.from_beginning,
                connect_timeout=args.connect_timeout,
                security=security,
            )
        )
        if registry is not None:
            from jobtrail.adapters.metrics.consumer import ConsumerLagCollector

            collector = ConsumerLagCollector(consumer)
            registry.register(collector)
            stack.callback(registry.unregister, collector)  # before the consumer closes
        stop_on_signals(stopping.set)
        stats = consumer.run(until_idle=args.until_idle, stop=stopping)
    summary(stats.summary())
    return 0


def serve_metrics(
    args: argparse.Namespace, stack: contextlib.ExitStack
) -> CollectorRegistry | None:
    """`--metrics-port`: the endpoint, started before the consumer connects (stopped by
    ``stack``), and its registry; without the option, neither (no prometheus_client loaded)."""
    if args.metrics_port is None:
        return None
    from jobtrail.adapters.metrics.server import serve
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    stack.callback(serve(registry, args.metrics_port, args.metrics_host).stop)
    return registry


def envelope_of(event: Event | RawEvent) -> dict[str, Any]:
    return event.envelope if isinstance(event, RawEvent) else event.envelope()


def print_json_line(event: Event | RawEvent) -> None:
    _emit(json.dumps(envelope_of(event), separators=(",", ":")))


def print_line(event: Event | RawEvent) -> None:
    """`occurred_at job_id vN Type {data}`; an event this version cannot read says so."""
    envelope = envelope_of(event)
    kind = event.type
    if isinstance(event, RawEvent):
        kind += f" (schema {event.schema_version}, not understood: passed on raw)"
    data = json.dumps(envelope.get("data"), separators=(",", ":"))
    occurred = envelope.get("occurred_at", "-")
    _emit(f"{occurred} {event.job_id} v{event.version} {kind} {data}")


def _emit(line: str) -> None:
    """One line on stdout, flushed: a pipe reader sees each event as it arrives."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
