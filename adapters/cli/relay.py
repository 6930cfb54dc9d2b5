"""`jobtrail relay`, and the Kafka options it shares with `worker --relay`."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.cli.args import positive_float, positive_int, stop_on_signals
from jobtrail.adapters.config import Settings
from jobtrail.adapters.kafka.publisher import KafkaSettings
from jobtrail.adapters.kafka.relay import Relay, RelaySettings


def add_kafka_options(parser: argparse.ArgumentParser) -> None:
    settings = Settings.from_env()
    parser.add_argument(
        "--kafka",
        default=settings.kafka_bootstrap,
        metavar="BOOTSTRAP",
        help="Kafka bootstrap servers, host:port[,…] (env JOBTRAIL_KAFKA_BOOTSTRAP; "
        "default %(default)s)",
    )
    parser.add_argument(
        "--topic",
        default=settings.kafka_topic,
        help="topic of the job events (env JOBTRAIL_KAFKA_TOPIC; default %(default)s)",
    )


def add_relay_options(parser: argparse.ArgumentParser) -> None:
    """What a relay needs, for `relay` and for `worker --relay`."""
    add_kafka_options(parser)
    parser.add_argument(
        "--partitions",
        type=positive_int,
        default=6,
        help="partitions of the topic when the relay creates it (default %(default)s)",
    )
    parser.add_argument(
        "--batch",
        type=positive_int,
        default=RelaySettings().batch,
        help="events read and sent per round (default %(default)s)",
    )
    parser.add_argument(
        "--broker-timeout",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="a batch not acknowledged within this counts as a broker outage (default %(default)s)",
    )
    parser.add_argument(
        "--relay-lease",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="a relay silent this long loses its turn to a standby (default %(default)s)",
    )


def add_commands(commands: Any) -> None:
    relay = commands.add_parser(
        "relay", help="publish the event log to Kafka (one active relay, others stand by)"
    )
    add_relay_options(relay)
    relay.add_argument(
        "--until-caught-up", action="store_true", help="exit once every event is published"
    )
    relay.set_defaults(handler=cmd_relay)


def relay_from_args(trail: Jobtrail, args: argparse.Namespace) -> Relay:
    kafka = KafkaSettings(
        bootstrap=args.kafka,
        topic=args.topic,
        partitions=args.partitions,
        timeout=args.broker_timeout,
    )
    return trail.relay(kafka, RelaySettings(batch=args.batch, lease=args.relay_lease))


def cmd_relay(trail: Jobtrail, args: argparse.Namespace) -> int:
    relay = relay_from_args(trail, args)
    stop_on_signals(relay.stop)
    relay.run(until_caught_up=args.until_caught_up)
    _, position, _ = relay.positions.holder()
    print(f"relay stopped at position {position}", file=sys.stderr)
    return 0
