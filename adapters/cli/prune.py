"""`jobtrail prune`: delete finished jobs' rows from the `job` table; the log keeps them.

``prune --finished-before TIME`` (an ISO 8601 time or an age like ``30d``) deletes the rows of
jobs that completed, failed or were cancelled before TIME, in batches, and prints one line:
how many. ``--dry-run`` prints how many it would delete and writes nothing. The events stay
in the log, so `jobtrail rebuild` restores every pruned row; `show` still answers for a
pruned job from its events. Each prune is recorded in the control log with ``--actor`` and
``--reason``. docs/retention.md.

Building the parser (`add_command`) imports only the standard library, the domain's limits
and `args`' argument types, like the rest of the parser; the handler imports the SQL adapter
when it runs.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from jobtrail.adapters.cli.args import BATCH, moment_or_age, whole

if TYPE_CHECKING:
    from jobtrail.adapters.bootstrap import Jobtrail

DEFAULT_BATCH = 10_000
"""Rows per transaction (`jobtrail.adapters.sql.retention.BATCH_ROWS`, repeated here so the
parser does not import SQLAlchemy)."""


def add_command(commands: Any) -> None:
    """Add `prune` to the `jobtrail` subcommands."""
    prune = commands.add_parser(
        "prune",
        help="delete finished jobs' rows from the job table (the log keeps their events)",
        description="Delete from the job table the rows of jobs that completed, failed or "
        "were cancelled before TIME. Queued and running jobs and the event log are never "
        "touched: `jobtrail rebuild` restores every pruned row, and `jobtrail show` still "
        "answers for a pruned job from its events. A pruned job's idempotency key is "
        "forgotten: submitting with it again creates a new job.",
    )
    prune.add_argument(
        "--finished-before",
        type=moment_or_age,
        required=True,
        metavar="TIME",
        help="prune jobs finished before TIME: an ISO 8601 time (no zone means UTC) or an "
        "age before now (30d, 12h, 90m, 45s)",
    )
    prune.add_argument(
        "--dry-run", action="store_true", help="print how many rows would go, write nothing"
    )
    prune.add_argument(
        "--batch",
        type=whole(BATCH),
        default=DEFAULT_BATCH,
        metavar="N",
        help="rows deleted per transaction (1 to 1,000,000; default %(default)s)",
    )
    prune.add_argument("--reason", help="why (recorded in the control log)")
    prune.add_argument("--actor", default="cli", help="who (recorded in the control log)")
    prune.set_defaults(handler=cmd_prune)


def cmd_prune(trail: Jobtrail, args: argparse.Namespace) -> int:
    from jobtrail.adapters.sql.retention import count_prunable, prune_job_rows
    from jobtrail.domain.canonical import utc_iso
    from jobtrail.domain.job import Meta

    cut = utc_iso(args.finished_before)
    if args.dry_run:
        count = count_prunable(trail.engine, args.finished_before)
        print(f"would prune {count} job row(s) finished before {cut} (dry run: nothing written)")
        return 0
    count = prune_job_rows(
        trail.engine,
        args.finished_before,
        clock=trail.service.clock,
        reason=args.reason,
        meta=Meta(actor=args.actor),
        batch=args.batch,
    )
    print(f"pruned {count} job row(s) finished before {cut} (the log keeps their events)")
    return 0
