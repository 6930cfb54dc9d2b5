"""`submit`, `cancel` and `rebuild`: the commands that change jobs, and print one plain line.

Imported only when one of them runs (`main.Handler`): SQLAlchemy and the domain, no Kafka,
Alembic or rich. What people read (`jobs`, `show`, `history`, `stats`) is in `views`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.domain.errors import InvalidCommand
from jobtrail.domain.job import Meta


def cmd_submit(trail: Jobtrail, args: argparse.Namespace) -> int:
    payload = parse_payload(args.payload)
    job_id = trail.submit(
        args.job_type,
        payload,
        max_attempts=args.max_attempts,
        priority=args.priority,
        delay=args.delay,
        idempotency_key=args.idempotency_key,
        meta=Meta(actor=args.actor),
    )
    print(job_id)
    return 0


def parse_payload(text: str) -> dict[str, Any]:
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidCommand(reason=f"--payload is not valid JSON ({error})") from None
    if not isinstance(payload, dict):
        raise InvalidCommand(reason='--payload must be a JSON object, like {"credits": 3}')
    return payload


def cmd_cancel(trail: Jobtrail, args: argparse.Namespace) -> int:
    outcome = trail.cancel(args.job_id, args.reason, Meta(actor=args.actor))
    status = trail.get(args.job_id)["status"]
    print(f"{args.job_id}: {outcome.value} (status {status})")
    return 0


def cmd_rebuild(trail: Jobtrail, args: argparse.Namespace) -> int:
    count = trail.rebuild()
    print(f"rebuilt the job table from the log: {count} job(s)")
    return 0
