"""The `jobtrail` command: a thin layer over `jobtrail.adapters.bootstrap`.

Tables for people (rich), ``--json`` for scripts. Any jobtrail error becomes one line on
stderr and exit status 1; usage errors exit 2 (argparse).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.cli import audit as cli_audit
from jobtrail.adapters.cli import consume as cli_consume
from jobtrail.adapters.cli.args import job_types, positive_float, positive_int, stop_on_signals
from jobtrail.adapters.cli.relay import add_commands as add_relay_commands
from jobtrail.adapters.cli.relay import add_relay_options, relay_from_args
from jobtrail.adapters.config import Settings
from jobtrail.adapters.kafka.relay import run_in_thread
from jobtrail.domain.errors import InvalidCommand, JobtrailError
from jobtrail.domain.events import utc_iso
from jobtrail.domain.job import Meta
from jobtrail.domain.status import JobStatus
from jobtrail.processors.engine.worker import WorkerSettings
from rich.console import Console
from rich.table import Table

PIPE_WIDTH = 160
"""Table width when stdout is not a terminal (rich would assume 80 columns)."""


def console() -> Console:
    return Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)


LIST_COLUMNS = ("id", "job_type", "status", "attempt", "progress", "error_message", "created_at")


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    quiet = logging.INFO if args.command in ("worker", "reap", "relay") else logging.WARNING
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else quiet,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for chatty in ("transitions", "kafka"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    trail = connect(args.db)
    try:
        handler: Callable[[Jobtrail, argparse.Namespace], int] = args.handler
        return handler(trail, args)
    except JobtrailError as error:
        print(f"jobtrail: error: {error}", file=sys.stderr)
        return 1
    finally:
        trail.close()


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="jobtrail", description=__doc__.splitlines()[0])
    root.add_argument(
        "--db",
        default=Settings.from_env().database_url,
        help="database URL (env JOBTRAIL_DATABASE_URL; default %(default)s)",
    )
    root.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    db = commands.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    db.add_parser("init", help="create or upgrade the schema (idempotent)").set_defaults(
        handler=cmd_db_init
    )

    submit = commands.add_parser("submit", help="queue a job; prints its id")
    submit.add_argument("job_type", metavar="TYPE")
    submit.add_argument("--payload", default="{}", help="a JSON object (default {})")
    submit.add_argument("--max-attempts", type=positive_int, default=3)
    submit.add_argument("--priority", type=int, default=0, help="higher runs first")
    submit.add_argument("--delay", type=float, default=0.0, help="seconds before it may start")
    submit.add_argument("--idempotency-key", help="the same key returns the same job")
    submit.add_argument("--actor", default="cli", help="who submits (recorded in the event)")
    submit.set_defaults(handler=cmd_submit)

    jobs = commands.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("--status", choices=[s.value for s in JobStatus])
    jobs.add_argument("--type", dest="job_type")
    jobs.add_argument("--limit", type=positive_int, default=50)
    jobs.add_argument("--json", action="store_true")
    jobs.set_defaults(handler=cmd_jobs)

    for name, handler, text in (
        ("show", cmd_show, "one job's row"),
        ("history", cmd_history, "one job's events in version order"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("job_id", metavar="JOB_ID")
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(handler=handler)

    cancel = commands.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("job_id", metavar="JOB_ID")
    cancel.add_argument("--reason")
    cancel.add_argument("--actor", default="cli")
    cancel.set_defaults(handler=cmd_cancel)

    commands.add_parser("rebuild", help="rebuild the job table from the log").set_defaults(
        handler=cmd_rebuild
    )

    stats = commands.add_parser("stats", help="counts, failure rate, durations")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(handler=cmd_stats)

    worker = commands.add_parser("worker", help="run processors until stopped (SIGTERM/SIGINT)")
    worker.add_argument("--concurrency", type=positive_int, default=4)
    worker.add_argument("--lease", type=positive_float, default=30.0, help="seconds")
    worker.add_argument("--heartbeat", type=positive_float, default=10.0, help="seconds")
    worker.add_argument("--types", type=job_types, help="comma-separated job types to run")
    worker.add_argument(
        "--prefetch",
        type=positive_int,
        default=4,
        help="jobs claimed per thread (started while they wait)",
    )
    worker.add_argument(
        "--until-empty",
        action="store_true",
        help="exit when nothing runs and nothing is due within a minute",
    )
    worker.add_argument("--max-jobs", type=positive_int, help="exit after claiming this many")
    worker.add_argument(
        "--grace", type=float, default=10.0, help="seconds running jobs get to finish after SIGTERM"
    )
    worker.add_argument(
        "--relay",
        action="store_true",
        help="also run the Kafka relay in this process (small deployments)",
    )
    add_relay_options(worker)
    worker.set_defaults(handler=cmd_worker)

    reap = commands.add_parser("reap", help="fail jobs whose lease expired")
    reap.add_argument("--once", action="store_true", help="one pass, then exit")
    reap.add_argument("--interval", type=positive_float, default=1.0, help="seconds")
    reap.set_defaults(handler=cmd_reap)

    add_relay_commands(commands)
    cli_consume.add_commands(commands)
    cli_audit.add_commands(commands)
    demo = commands.add_parser("demo", help="a mixed batch of jobs run by workers, end to end")
    demo.set_defaults(handler=cmd_demo)
    return root


# ------------------------------------------------------------------------ commands


def cmd_db_init(trail: Jobtrail, args: argparse.Namespace) -> int:
    trail.init_db()
    print("schema is up to date", file=sys.stderr)
    return 0


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


def cmd_jobs(trail: Jobtrail, args: argparse.Namespace) -> int:
    rows = trail.jobs(args.status, args.job_type, args.limit)
    if args.json:
        print_json(rows)
        return 0
    table = Table(*LIST_COLUMNS, title=f"{len(rows)} job(s)")
    for row in rows:
        table.add_row(*(cell(row[c]) for c in LIST_COLUMNS))
    console().print(table)
    return 0


def cmd_show(trail: Jobtrail, args: argparse.Namespace) -> int:
    row = trail.get(args.job_id)
    if args.json:
        print_json(row)
        return 0
    table = Table("column", "value", title=f"job {row['id']}", show_header=False)
    for name, value in row.items():
        table.add_row(name, cell(value))
    console().print(table)
    return 0


def cmd_history(trail: Jobtrail, args: argparse.Namespace) -> int:
    events = [e.envelope() for e in trail.history(args.job_id)]
    if args.json:
        print_json(events)
        return 0
    table = Table(
        "v",
        "position",
        "type",
        "occurred_at",
        "actor",
        "data",
        "hash",
        title=f"history of {args.job_id}",
    )
    for e in events:
        table.add_row(
            str(e["version"]),
            str(e["position"]),
            e["type"],
            e["occurred_at"],
            e["metadata"]["actor"],
            json.dumps(e["data"]),
            e["hash"][:12],
        )
    console().print(table)
    return 0


def cmd_cancel(trail: Jobtrail, args: argparse.Namespace) -> int:
    outcome = trail.cancel(args.job_id, args.reason, Meta(actor=args.actor))
    status = trail.get(args.job_id)["status"]
    print(f"{args.job_id}: {outcome.value} (status {status})")
    return 0


def cmd_rebuild(trail: Jobtrail, args: argparse.Namespace) -> int:
    count = trail.rebuild()
    print(f"rebuilt the job table from the log: {count} job(s)")
    return 0


def cmd_stats(trail: Jobtrail, args: argparse.Namespace) -> int:
    stats = trail.stats().as_dict()
    if args.json:
        print_json(stats)
        return 0
    table = Table("job type", *(s.value for s in JobStatus), title=f"{stats['total']} job(s)")
    for job_type, counts in stats["by_type"].items():
        table.add_row(job_type, *(str(counts.get(s.value, 0)) for s in JobStatus))
    console().print(table)
    rate = stats["failure_rate"]
    console().print(f"failure rate: {'-' if rate is None else f'{rate:.1%}'}")
    codes = ", ".join(f"{code} {n}" for code, n in stats["error_codes"].items()) or "-"
    console().print(f"error codes: {codes}")
    durations = ", ".join(
        f"{p} {'-' if v is None else f'{v:.3f} s'}" for p, v in stats["duration_seconds"].items()
    )
    console().print(f"duration (created → finished): {durations}")
    return 0


def cmd_worker(trail: Jobtrail, args: argparse.Namespace) -> int:
    settings = WorkerSettings(
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        lease_seconds=args.lease,
        heartbeat_seconds=min(args.heartbeat, args.lease / 2),
        job_types=args.types,
        until_empty=args.until_empty,
        max_jobs=args.max_jobs,
        grace_seconds=args.grace,
    )
    worker = trail.worker(settings)
    stop_on_signals(worker.stop)
    relay = relay_from_args(trail, args) if args.relay else None
    relay_thread = run_in_thread(relay) if relay else None
    try:
        stats = worker.run()
    finally:
        if relay and relay_thread:
            relay.stop(drain=args.until_empty)
            relay_thread.join()
    print(
        f"claimed {stats.claimed}, completed {stats.completed}, failed {stats.failed}, "
        f"retries scheduled {stats.retried}, reaped {stats.reaped}",
        file=sys.stderr,
    )
    return 0


def cmd_reap(trail: Jobtrail, args: argparse.Namespace) -> int:
    reaper = trail.reaper()
    stopping = threading.Event()
    stop_on_signals(stopping.set)
    total = reaper.reap_once()
    while not args.once and not stopping.wait(args.interval):
        total += reaper.reap_once()
    print(f"reaped {total} job(s)", file=sys.stderr)
    return 0


def cmd_demo(trail: Jobtrail, args: argparse.Namespace) -> int:
    from jobtrail.adapters.cli.demo import run

    run(trail, console())
    return 0


# ------------------------------------------------------------------------ output


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return utc_iso(value)
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def print_json(value: Any) -> None:
    print(json.dumps(value, default=json_default, indent=2, sort_keys=False))


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return utc_iso(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
