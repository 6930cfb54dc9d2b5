"""`submit`, `cancel` and `rebuild`: the commands that change jobs, and print one plain line.

Imported only when one of them runs (`main.Handler`): SQLAlchemy and the domain, no Kafka,
Alembic or rich. What people read (`jobs`, `show`, `history`, `stats`) is in `views`.
"""

from __future__ import annotations

import argparse
import json
import math
from typing import Any

from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.domain.errors import InvalidCommand
from jobtrail.domain.job import Meta
from jobtrail.domain.json_values import MAX_DEPTH
from jobtrail.domain.services import check_payload


def cmd_submit(trail: Jobtrail, args: argparse.Namespace) -> int:
    payload = parse_payload(args.payload)
    job_id = trail.submit(
        args.job_type,
        payload,
        max_attempts=args.max_attempts,
        priority=args.priority,
        delay=args.delay,
        idempotency_key=args.idempotency_key,
        queue=args.queue,
        concurrency_key=args.concurrency_key,
        meta=Meta(actor=args.actor, traceparent=args.traceparent),
    )
    print(job_id)
    if args.wait:  # the id first: the caller knows it even if the wait times out
        from jobtrail.adapters.cli.waiting import wait_and_report

        return wait_and_report(trail, job_id, args.timeout)
    return 0


def parse_payload(text: str) -> dict[str, Any]:
    """``--payload``: a JSON object in the accepted domain (`jobtrail.domain.json_values`).

    Stricter than `json.loads`: ``NaN``, ``Infinity`` and ``-Infinity`` are read as the
    floats they stand for and then refused with the path to them, like the same value given
    to the API; a number beyond a double's range, or an integer too long for Python to read,
    is refused as it is read.
    """
    try:
        payload = json.loads(text, parse_constant=_constant, parse_float=_float, parse_int=_integer)
    except json.JSONDecodeError as error:
        raise InvalidCommand(reason=f"--payload is not valid JSON ({error})") from None
    except RecursionError:
        raise InvalidCommand(
            reason=f"--payload is nested more than {MAX_DEPTH} levels deep"
        ) from None
    if not isinstance(payload, dict):
        raise InvalidCommand(reason='--payload must be a JSON object, like {"credits": 3}')
    check_payload(payload)
    return payload


def _constant(name: str) -> float:
    """``NaN``, ``Infinity``, ``-Infinity``: kept as floats, refused with their path."""
    return float(name)


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise InvalidCommand(
            reason=f"--payload: the number {_cut(text)} is beyond the range of a double "
            "(±1.8e308); send it as a string"
        )
    return number


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # more digits than Python reads (sys.get_int_max_str_digits)
        raise InvalidCommand(
            reason=f"--payload: an integer of {len(text.lstrip('-'))} digits is beyond "
            "±(2^53-1), which JSON readers such as JavaScript cannot hold exactly; "
            "send it as a string"
        ) from None


def _cut(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:40]}…"


def cmd_cancel(trail: Jobtrail, args: argparse.Namespace) -> int:
    outcome = trail.cancel(args.job_id, args.reason, Meta(actor=args.actor))
    status = trail.get(args.job_id)["status"]
    print(f"{args.job_id}: {outcome.value} (status {status})")
    return 0


def cmd_rebuild(trail: Jobtrail, args: argparse.Namespace) -> int:
    count = trail.rebuild()
    print(f"rebuilt the job table from the log: {count} job(s)")
    return 0
