"""Argument types, the options several commands share, and signal handling.

The parser is built from this module and `main`, so it imports nothing but the standard
library, the configuration and the domain's limits: `jobtrail --help` and a usage error stay
instant.

Usage errors (exit 2) are what the parser decides from the command line alone: an unknown
command or option, a missing argument, and an option's number that is malformed (``nan``,
``inf``, ``1e300``, ``12abc``) or outside its range. The ranges are those of
`jobtrail.domain.limits` for what the API checks too (``--priority``, ``--max-attempts``,
``--delay``, ``--limit``, ``--since``) and the ones below for the processes' own settings.
A usage error is one line on stderr, like every other error:
``jobtrail: error: argument --delay: must be … (see `jobtrail submit --help`)``.
Texts a command checks when it runs (a job type, a payload, an idempotency key, a job id, a
file to write) are command errors, exit 1.
"""

from __future__ import annotations

import argparse
import re
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from typing import NoReturn

from jobtrail.adapters.config import Settings
from jobtrail.domain import limits, moments
from jobtrail.domain.errors import InvalidField

RELAY_BATCH = 5000
"""`RelaySettings().batch`, repeated here so the parser does not import the relay (tested)."""

APP_PATH = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?")
"""``module.path`` or ``module.path:attribute``."""


CONCURRENCY = limits.Whole(1, 1000)
"""Processor threads of a worker (``--concurrency``), jobs claimed per thread (``--prefetch``)."""
COUNT = limits.Whole(1, limits.INT32_MAX)
"""``--max-jobs``."""
PARTITIONS = limits.Whole(1, 10_000)
BATCH = limits.Whole(1, 1_000_000)
MAX_PROBLEMS = limits.Whole(0, limits.INT32_MAX)
"""``replay --max-problems``: 0 lists none and still counts them all."""
PROCESSES = limits.Whole(1, 64)
"""``worker --processes``: worker processes under one supervisor (docs/processes.md)."""


def moment_or_age(text: str) -> datetime:
    """An ISO 8601 time (no zone means UTC), or an age before now (``30d``, ``12h``)."""
    try:
        return moments.moment_or_age(text, datetime.now(UTC))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{_cut(text)} {error}") from None


def window_start(text: str) -> datetime | None:
    """`stats --since`: a moment or an age, or ``all`` (no window: None)."""
    return None if text.strip() == "all" else moment_or_age(text)


class Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line, like the other errors (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"jobtrail: error: {message} (see `{self.prog} --help`)\n")


def _cut(text: str) -> str:
    return repr(text) if len(text) <= 40 else f"{text[:40]!r}… ({len(text):,} characters)"


def whole(rule: limits.Whole) -> Callable[[str], int]:
    """An argument type: an integer within ``rule``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:  # not an integer, or more digits than Python reads
            raise argparse.ArgumentTypeError(
                f"must be {rule.describe()}, not {_cut(text)}"
            ) from None
        _check(rule, value, text)
        return value

    parse.__name__ = "whole number"
    return parse


def seconds(rule: limits.Seconds) -> Callable[[str], float]:
    """An argument type: a finite number of seconds within ``rule`` (no nan, no inf)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"must be {rule.describe()}, not {_cut(text)}"
            ) from None
        _check(rule, value, text)
        return value

    parse.__name__ = "seconds"
    return parse


def _check(rule: limits.Whole | limits.Seconds, value: float, text: str) -> None:
    try:
        rule.check(value, "")
    except InvalidField:
        raise argparse.ArgumentTypeError(f"must be {rule.describe()}, not {_cut(text)}") from None


positive_float = seconds(limits.WAIT)
"""Seconds to wait: more than 0, finite, at most a week."""


def database_url(text: str) -> str:
    """``--db``: not empty. Whether it is a URL jobtrail can use is checked when the command
    connects (exit 1), as is JOBTRAIL_DATABASE_URL, which is configuration, not usage."""
    if not text.strip():
        raise argparse.ArgumentTypeError(
            "the database URL is empty (give sqlite:///PATH or postgresql://USER@HOST/DATABASE "
            "with --db or JOBTRAIL_DATABASE_URL)"
        )
    return text


def job_types(text: str) -> frozenset[str]:
    types = frozenset(t.strip() for t in text.split(",") if t.strip())
    if not types:
        raise argparse.ArgumentTypeError("name at least one job type")
    return types


def queue_names(text: str) -> frozenset[str]:
    queues = frozenset(q.strip() for q in text.split(",") if q.strip())
    if not queues:
        raise argparse.ArgumentTypeError("name at least one queue")
    return queues


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
        "default %(default)s). TLS and SASL are set in the environment only, never here: "
        "JOBTRAIL_KAFKA_SECURITY_PROTOCOL, JOBTRAIL_KAFKA_SSL_* and JOBTRAIL_KAFKA_SASL_* "
        "(docs/configuration.md)",
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
        type=whole(PARTITIONS),
        default=6,
        help="partitions of the topic when the relay creates it (default %(default)s)",
    )
    parser.add_argument(
        "--batch",
        type=whole(BATCH),
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


def add_process_options(parser: argparse.ArgumentParser) -> None:
    """`worker --processes N` (docs/processes.md) and the worker's id."""
    parser.add_argument(
        "--processes",
        type=whole(PROCESSES),
        default=1,
        metavar="N",
        help="run N worker processes, each with these options, under this one, which "
        "forwards SIGTERM/SIGINT and restarts a process that dies (1 to 64; default 1: "
        "this process is the worker)",
    )
    parser.add_argument(
        "--worker-id",
        metavar="ID",
        help="the worker's id, the actor of the events it writes (default HOST:RANDOM); "
        "with --processes N, process I adds -pI",
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
