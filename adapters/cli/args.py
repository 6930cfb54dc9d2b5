"""Argument types and signal handling shared by the CLI's command modules."""

from __future__ import annotations

import argparse
import logging
import signal
from collections.abc import Callable


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {value}")
    return value


def job_types(text: str) -> frozenset[str]:
    types = frozenset(t.strip() for t in text.split(",") if t.strip())
    if not types:
        raise argparse.ArgumentTypeError("name at least one job type")
    return types


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def stop_on_signals(stop: Callable[[], None]) -> None:
    """SIGTERM or SIGINT: stop gracefully; a second one: exit at once."""
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
