"""`jobtrail retry`: queue finished jobs again as new jobs, by id or in bulk.

``retry JOB_ID…`` prints the new ids, one a line in the order given (so
``new=$(jobtrail retry "$id")`` works like `submit`). The bulk form (``--since``, with
``--status``, ``--type``, ``--code``, ``--until``, ``--limit``) prints one line per job it
takes — id, type, status, error code, then ``-> NEW_ID`` — and a count; ``--dry-run``
prints the same lines without the new ids and writes nothing.

Building the parser (`add_command`) imports only the standard library, the domain's limits
and `args`/`audit`'s argument types, like the rest of the parser; the handler imports the
domain when it runs.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from jobtrail.adapters.cli.args import whole
from jobtrail.adapters.cli.audit import time_arg
from jobtrail.domain.lineage import DEFAULT_RETRY_LIMIT, RETRY_LIMIT, RETRYABLE_STATUSES

if TYPE_CHECKING:
    from jobtrail.adapters.bootstrap import Jobtrail

BULK_OPTIONS = ("status", "job_type", "error_code", "until")
"""Options that only the bulk form takes (besides ``--since``, which makes it bulk)."""


def add_command(commands: Any) -> None:
    """Add `retry` to the `jobtrail` subcommands."""
    retry = commands.add_parser(
        "retry",
        help="queue finished jobs again as new jobs (by id, or in bulk with --since)",
        description="Queue finished jobs again as new jobs that record which job they retry "
        "(the finished job is never changed). Give job ids, or --since for every job that "
        "finished since then with --status (and --type, --code, --until) and has no retry "
        "yet. A job whose retry has not finished yet gives that retry's id again.",
    )
    retry.add_argument("job_ids", nargs="*", metavar="JOB_ID", help="finished jobs to retry")
    retry.add_argument(
        "--status",
        choices=list(RETRYABLE_STATUSES),
        help="bulk: jobs that ended in this status (default failed)",
    )
    retry.add_argument("--type", dest="job_type", metavar="TYPE", help="bulk: of this job type")
    retry.add_argument(
        "--code", dest="error_code", metavar="CODE", help="bulk: with this error code"
    )
    retry.add_argument(
        "--since",
        type=time_arg,
        metavar="TIME",
        help="bulk: finished at or after TIME (ISO 8601; no zone means UTC)",
    )
    retry.add_argument("--until", type=time_arg, metavar="TIME", help="bulk: finished before TIME")
    retry.add_argument(
        "--limit",
        type=whole(RETRY_LIMIT),
        default=DEFAULT_RETRY_LIMIT,
        metavar="N",
        help="bulk: at most this many jobs, the earliest finished first "
        f"(1 to {RETRY_LIMIT.high:,}; default %(default)s)",
    )
    retry.add_argument(
        "--dry-run", action="store_true", help="bulk: print what would be retried, write nothing"
    )
    retry.add_argument("--reason", help="why (recorded in the new jobs' JobQueued)")
    retry.add_argument("--actor", default="cli", help="who retries (recorded in the events)")
    retry.set_defaults(handler=cmd_retry)


def cmd_retry(trail: Jobtrail, args: argparse.Namespace) -> int:
    mistake = usage_mistake(args)
    if mistake:
        print(f"jobtrail: error: {mistake} (see `jobtrail retry --help`)", file=sys.stderr)
        return 2
    from jobtrail.domain.job import Meta

    meta = Meta(actor=args.actor)
    if args.job_ids:
        for new_id in trail.retry_many(args.job_ids, args.reason, meta):
            print(new_id)
        return 0
    return retry_in_bulk(trail, args, meta)


def usage_mistake(args: argparse.Namespace) -> str | None:
    """What is wrong with the command line as a whole (each argument is already checked)."""
    bulk = [name for name in BULK_OPTIONS if getattr(args, name) is not None]
    if args.job_ids:
        if args.since is not None or bulk or args.dry_run:
            return "give job ids or bulk options (--since, --status, …), not both"
        return None
    if args.since is None:
        return "give job ids to retry, or --since TIME to retry in bulk"
    return None


def retry_in_bulk(trail: Jobtrail, args: argparse.Namespace, meta: Any) -> int:
    pairs = trail.retry_where(
        since=args.since,
        status=args.status or "failed",
        job_type=args.job_type,
        error_code=args.error_code,
        until=args.until,
        limit=args.limit,
        dry_run=args.dry_run,
        reason=args.reason,
        meta=meta,
    )
    rows = trail.queries.rows([original for original, _ in pairs])
    for original, new_id in pairs:
        print(describe(rows.get(original, {"id": original}), new_id))
    done = "would retry" if args.dry_run else "retried"
    note = " (dry run: nothing written)" if args.dry_run else ""
    print(f"{done} {len(pairs)} job(s){note}")
    if len(pairs) == args.limit:
        more = "more jobs may match" if args.dry_run else "run again for the next ones"
        print(f"--limit {args.limit} reached: {more}", file=sys.stderr)
    return 0


def describe(row: dict[str, Any], new_id: str | None) -> str:
    """One job of a bulk retry: id, type, status, error code (``-`` for none), new id."""
    fields = (row.get("job_type"), row.get("status"), row.get("error_code"))
    line = " ".join([row["id"], *(str(value or "-") for value in fields)])
    return line if new_id is None else f"{line} -> {new_id}"
