"""`jobtrail relay`, and the relay `worker --relay` runs beside its worker."""

from __future__ import annotations

import argparse
import logging

from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.cli.args import stop_on_signals
from jobtrail.adapters.cli.logs import summary
from jobtrail.adapters.cli.metrics import relay_metrics
from jobtrail.adapters.kafka.publisher import KafkaSettings
from jobtrail.adapters.kafka.relay import Relay, RelaySettings
from jobtrail.adapters.kafka.security import KafkaSecurity


def relay_from_args(trail: Jobtrail, args: argparse.Namespace) -> Relay:
    """The relay the options of `args.add_relay_options` describe.

    TLS and SASL come from the environment (`KafkaSecurity.from_env`), checked here, before
    anything connects: settings that do not add up are one `KafkaSecurityInvalid` line.
    """
    security = KafkaSecurity.from_env()
    # kafka-python logs every failed connection attempt at WARNING or ERROR (and, at DEBUG,
    # its configuration); the relay says what happened in its own lines.
    logging.getLogger("kafka").setLevel(logging.DEBUG if args.verbose else logging.CRITICAL)
    kafka = KafkaSettings(
        bootstrap=args.kafka,
        topic=args.topic,
        partitions=args.partitions,
        timeout=args.broker_timeout,
        security=security,
    )
    return trail.relay(kafka, RelaySettings(batch=args.batch, lease=args.relay_lease))


def cmd_relay(trail: Jobtrail, args: argparse.Namespace) -> int:
    relay = relay_from_args(trail, args)
    endpoint = relay_metrics(trail, args)  # a port in use: one line, nothing published
    stop_on_signals(relay.stop)
    try:
        relay.run(until_caught_up=args.until_caught_up)
    finally:
        if endpoint:
            endpoint.stop()
    _, position, _ = relay.positions.holder()
    summary(f"relay stopped at position {position}")
    return 0
