"""Argument types, the options several commands share, and signal handling.

The parser is built from this module and `main`, so it imports nothing but the standard
library and the configuration: `jobtrail --help` and a usage error stay instant.
"""

from __future__ import annotations

import argparse
import re
import signal
from collections.abc import Callable

from jobtrail.adapters.config import Settings

RELAY_BATCH = 5000
"""`RelaySettings().batch`, repeated here so the parser does not import the relay (tested)."""

APP_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?")
"""``module.path`` or ``module.path:attribute``."""


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {value}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def job_types(text: str) -> frozenset[str]:
    types = frozenset(t.strip() for t in text.split(",") if t.strip())
    if not types:
        raise argparse.ArgumentTypeError("name at least one job type")
    return types


def app_path(text: str) -> str:
    """The shape of ``--app`` only: whether it imports is checked when the worker starts."""
    if not APP_PATH.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"expected module.path or module.path:attribute, not {text!r}"
        )
    return text


def add_kafka_options(parser: argparse.ArgumentParser) -> None:
    """Where the topic is: for `relay`, `worker --relay` and `consume`."""
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
        default=RELAY_BATCH,
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


def stop_on_signals(stop: Callable[[], None]) -> None:
    """SIGTERM or SIGINT: stop gracefully; a second one: exit at once."""
    import logging  # here, not at the top: the parser is built without it

    seen = 0

    def handle(signum: int, _frame: object) -> None:
        nonlocal seen
        seen += 1
        if seen > 1:
            raise SystemExit(128 + signum)
        logging.getLogger("jobtrail").warning("%s: stopping", signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
