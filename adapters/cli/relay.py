"""`jobtrail relay`, and the relay `worker --relay` runs beside its worker."""

from __future__ import annotations

import argparse
import sys

from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.cli.args import stop_on_signals
from jobtrail.adapters.kafka.publisher import KafkaSettings
from jobtrail.adapters.kafka.relay import Relay, RelaySettings


def relay_from_args(trail: Jobtrail, args: argparse.Namespace) -> Relay:
    """The relay the options of `args.add_relay_options` describe."""
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
