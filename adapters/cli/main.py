"""The `jobtrail` command: the parser, and the dispatch to the module of the command that runs.

The parser is built from the standard library alone. Each command's handler is named by its
dotted path (`Handler`) and imported only when that command runs, so `--help`, a usage error
or `submit` load only what they need (tests/unit/test_cli_imports.py checks which modules).
Any jobtrail error becomes one line on stderr and exit status 1; usage errors exit 2, in one
line too (`args.Parser`; what is which: `jobtrail.adapters.cli.args`).

One module of about 400 lines, on purpose: the parser of every command is built here from
the standard library alone (the groups whose handlers need no extra module to build their
parser add themselves: audit, retry, schedule), so what `--help` loads stays small and the
whole command line can be read in one place.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobtrail.adapters.cli import audit as cli_audit
from jobtrail.adapters.cli import logs
from jobtrail.adapters.cli import schedule as cli_schedule
from jobtrail.adapters.cli.args import (
    CONCURRENCY,
    COUNT,
    Parser,
    add_kafka_options,
    add_process_options,
    add_relay_options,
    app_path,
    database_url,
    job_types,
    positive_float,
    queue_names,
    seconds,
    whole,
    window_start,
)
from jobtrail.adapters.cli.logs import add_log_format, failure
from jobtrail.adapters.config import Settings
from jobtrail.domain import limits
from jobtrail.domain.errors import JobtrailError
from jobtrail.domain.status import JobStatus

if TYPE_CHECKING:
    from jobtrail.adapters.bootstrap import Jobtrail

DESCRIPTION = "jobtrail: an event-sourced state machine for background jobs."

LONG_RUNNING = frozenset({"worker", "reap", "relay", "scheduler", "web", "metrics"})
"""Commands that log what they do at INFO; the others log warnings only."""
LOG_FORMAT_COMMANDS = LONG_RUNNING | {"consume"}
"""Commands that take `--log-format` after their name too (it is a root option as well)."""
READ_ONLY = frozenset({"jobs", "show", "history", "stats", "replay", "export", "queues", "metrics"})
"""Commands that only read the database: on SQLite they open it read-only."""


@dataclass(frozen=True)
class Handler:
    """A command's function, ``"module:function"``, imported when the command runs.

    With ``database`` the function is called as ``f(trail, args)`` on a connected
    `Jobtrail`, else as ``f(args)`` (`consume` needs the broker, not SQLAlchemy).
    """

    target: str
    database: bool = True

    def load(self) -> Callable[..., int]:
        module, _, name = self.target.partition(":")
        function: Callable[..., int] = getattr(importlib.import_module(module), name)
        return function

    def __call__(self, args: argparse.Namespace) -> int:
        if not self.database:
            return self.load()(args)
        return with_trail(self.load(), args)


def cli(name: str, *, database: bool = True) -> Handler:
    """The handler ``name`` of a module of this package, e.g. ``cli("jobs:cmd_submit")``."""
    return Handler(f"jobtrail.adapters.cli.{name}", database)


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    configure_logging(args)
    try:
        return run(args)
    except JobtrailError as error:
        failure(f"jobtrail: error: {error}")  # one line: plain, or JSON with --log-format json
        return 1


def run(args: argparse.Namespace) -> int:
    handler = args.handler
    if isinstance(handler, Handler):
        return handler(args)
    return with_trail(handler, args)  # the audit group's functions: f(trail, args)


def with_trail(
    function: Callable[[Jobtrail, argparse.Namespace], int], args: argparse.Namespace
) -> int:
    from jobtrail.adapters.bootstrap import connect

    trail = connect(args.db, read_only=args.command in READ_ONLY)
    try:
        return function(trail, args)
    finally:
        trail.close()


def configure_logging(args: argparse.Namespace) -> None:
    logs.configure_logging(args, info=args.command in LONG_RUNNING)


# ------------------------------------------------------------------------ the parser


def parser() -> argparse.ArgumentParser:
    root = Parser(prog="jobtrail", description=DESCRIPTION)
    root.add_argument(
        "--db",
        type=database_url,
        default=None,  # connect() reads JOBTRAIL_DATABASE_URL; an empty one is refused there
        metavar="URL",
        help="database URL (env JOBTRAIL_DATABASE_URL; default "
        f"{Settings.from_env().database_url})",
    )
    root.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    add_log_format(root, root=True)
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_db_commands(commands)
    add_job_commands(commands)
    add_worker_commands(commands)
    add_flow_commands(commands)
    add_kafka_commands(commands)
    cli_audit.add_commands(commands)  # builds its parser from the standard library too
    cli_schedule.add_commands(commands)  # so does this one
    add_web_command(commands)
    commands.add_parser(
        "demo", help="a mixed batch of jobs run by workers, end to end"
    ).set_defaults(handler=cli("demo:cmd_demo"))
    for name in sorted(LOG_FORMAT_COMMANDS & set(commands.choices)):
        add_log_format(commands.choices[name])  # `jobtrail worker --log-format json` too
    return root


def add_db_commands(commands: Any) -> None:
    db = commands.add_parser("db", help="database schema").add_subparsers(
        dest="db_command", required=True, metavar="ACTION"
    )
    db.add_parser("init", help="create or upgrade the schema (idempotent)").set_defaults(
        handler=cli("db:cmd_db_init")
    )


def add_job_commands(commands: Any) -> None:
    submit = commands.add_parser("submit", help="queue a job; prints its id")
    submit.add_argument("job_type", metavar="TYPE")
    submit.add_argument("--payload", default="{}", help="a JSON object (default {})")
    submit.add_argument(
        "--max-attempts", type=whole(limits.MAX_ATTEMPTS), default=3, help="1 to 1000 (default 3)"
    )
    submit.add_argument(
        "--priority",
        type=whole(limits.PRIORITY),
        default=0,
        help="higher runs first (a 32-bit integer; default 0)",
    )
    submit.add_argument(
        "--delay",
        type=seconds(limits.DELAY),
        default=0.0,
        help="seconds before it may start (0 to 10 years)",
    )
    submit.add_argument("--idempotency-key", help="the same key returns the same job")
    submit.add_argument(
        "--queue", default="default", help="the named queue it waits in (default: default)"
    )
    submit.add_argument(
        "--concurrency-key",
        metavar="KEY",
        help="what a per-key limit counts (a customer, a tenant; see `limit set --per-key`)",
    )
    submit.add_argument("--actor", default="cli", help="who submits (recorded in the event)")
    submit.add_argument(
        "--traceparent",
        metavar="TRACEPARENT",
        help="the W3C trace context of the request (00-<32 hex>-<16 hex>-<2 hex>): kept in "
        "the job's events and Kafka headers, the parent of each attempt's span",
    )
    submit.add_argument(
        "--wait",
        action="store_true",
        help="then wait for it to finish and print its result (exit 0 completed, 1 failed, "
        "3 cancelled, 4 timed out)",
    )
    add_timeout(submit)
    submit.set_defaults(handler=cli("jobs:cmd_submit"))

    jobs = commands.add_parser("jobs", help="list jobs, newest first")
    jobs.add_argument("--status", choices=[s.value for s in JobStatus])
    jobs.add_argument("--type", dest="job_type")
    jobs.add_argument("--queue")
    jobs.add_argument(
        "--limit", type=whole(limits.LIST_LIMIT), default=50, help="1 to 1,000,000 (default 50)"
    )
    jobs.add_argument("--json", action="store_true")
    jobs.set_defaults(handler=cli("views:cmd_jobs"))

    for name, text in (
        ("show", "one job: its row in full, then its history"),
        ("history", "one job's events in version order, one line each"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("job_id", metavar="JOB_ID")
        sub.add_argument("--json", action="store_true")
        sub.set_defaults(handler=cli(f"views:cmd_{name}"))

    cancel = commands.add_parser("cancel", help="cancel a queued or running job")
    cancel.add_argument("job_id", metavar="JOB_ID")
    cancel.add_argument("--reason")
    cancel.add_argument("--actor", default="cli")
    cancel.set_defaults(handler=cli("jobs:cmd_cancel"))

    from jobtrail.adapters.cli import prune, retry  # their parsers: standard library only

    retry.add_command(commands)
    prune.add_command(commands)

    from jobtrail.adapters.cli import archive  # its parser needs the standard library only

    archive.add_command(commands)

    wait = commands.add_parser(
        "wait",
        help="wait for a job to finish (exit 0 completed, 1 failed, 3 cancelled, 4 timed out)",
    )
    wait.add_argument("job_id", metavar="JOB_ID")
    add_timeout(wait)
    wait.set_defaults(handler=cli("waiting:cmd_wait"))

    commands.add_parser("rebuild", help="rebuild the job table from the log").set_defaults(
        handler=cli("jobs:cmd_rebuild")
    )

    stats = commands.add_parser("stats", help="counts, failure rate, durations")
    stats.add_argument(
        "--since",
        type=window_start,
        default="24h",
        metavar="TIME|AGE|all",
        help="count the jobs finished at or after this (ISO time or an age like 24h, 7d), "
        "and every live one; 'all' reads every row of the job table (default %(default)s)",
    )
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(handler=cli("views:cmd_stats"))


def add_timeout(parser: Any) -> None:
    """`submit --wait` and `wait`: how long to wait (exit 4 after it)."""
    parser.add_argument(
        "--timeout",
        type=seconds(limits.WAIT),
        default=60.0,
        metavar="SECONDS",
        help="how long to wait (more than 0, at most a week; default %(default)g)",
    )


def add_worker_commands(commands: Any) -> None:
    worker = commands.add_parser("worker", help="run processors until stopped (SIGTERM/SIGINT)")
    worker.add_argument(
        "--app",
        type=app_path,
        default=Settings.from_env().app,
        metavar="MODULE[:ATTRIBUTE]",
        help="your processors: a Registry, or a function returning one (attribute default "
        "`registry`; env JOBTRAIL_APP; without it, the sample processors)",
    )
    worker.add_argument("--concurrency", type=whole(CONCURRENCY), default=4, help="1 to 1000")
    add_process_options(worker)  # --processes N, --worker-id
    worker.add_argument(
        "--lease", type=positive_float, default=30.0, help="seconds (more than 0, at most a week)"
    )
    worker.add_argument(
        "--heartbeat",
        type=positive_float,
        default=10.0,
        help="seconds (more than 0, at most a week; at most half the lease is used)",
    )
    worker.add_argument("--types", type=job_types, help="comma-separated job types to run")
    worker.add_argument(
        "--queues",
        type=queue_names,
        metavar="QUEUES",
        help="comma-separated queues to serve (default: every queue)",
    )
    worker.add_argument(
        "--prefetch",
        type=whole(CONCURRENCY),
        default=4,
        help="jobs claimed per thread (started while they wait)",
    )
    worker.add_argument(
        "--until-empty",
        action="store_true",
        help="exit when nothing runs and nothing is due within a minute",
    )
    worker.add_argument("--max-jobs", type=whole(COUNT), help="exit after claiming this many")
    worker.add_argument(
        "--grace",
        type=seconds(limits.GRACE),
        default=10.0,
        help="seconds running jobs get to finish after SIGTERM (0 to a week)",
    )
    worker.add_argument(
        "--relay",
        action="store_true",
        help="also run the Kafka relay in this process (small deployments)",
    )
    add_relay_options(worker)
    add_metrics_options(worker)
    worker.add_argument(
        "--no-scheduler",
        dest="scheduler",
        action="store_false",
        help="do not enqueue the due ticks of cron schedules in this worker (default: it does)",
    )
    worker.set_defaults(handler=cli("worker:cmd_worker"))

    reap = commands.add_parser("reap", help="fail jobs whose lease expired")
    reap.add_argument("--once", action="store_true", help="one pass, then exit")
    reap.add_argument("--interval", type=positive_float, default=1.0, help="seconds")
    reap.set_defaults(handler=cli("worker:cmd_reap"))

    metrics = commands.add_parser(
        "metrics", help="serve queue-wide Prometheus gauges read from the database"
    )
    metrics.add_argument("--port", type=whole(METRICS_PORT), default=9808, help="default 9808")
    metrics.add_argument("--host", default="127.0.0.1", help="address to listen on")
    metrics.add_argument(
        "--interval",
        type=positive_float,
        default=5.0,
        metavar="SECONDS",
        help="read the database at most this often; scrapes in between share a read "
        "(default %(default)g)",
    )
    metrics.add_argument(
        "--lease-window",
        type=positive_float,
        default=30.0,
        metavar="SECONDS",
        help="leases ending within this count as expiring (default %(default)g)",
    )
    metrics.add_argument("--once", action="store_true", help="print the gauges once and exit")
    metrics.set_defaults(handler=cli("metrics:cmd_metrics"))


METRICS_PORT = limits.Whole(1, 65_535)


def add_metrics_options(parser: Any) -> None:
    """`worker`, `relay` and `consume`: a Prometheus endpoint (docs/metrics.md)."""
    parser.add_argument(
        "--metrics-port",
        type=whole(METRICS_PORT),
        metavar="PORT",
        help="serve Prometheus metrics on this port (default: no metrics)",
    )
    parser.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="address the metrics port listens on (default %(default)s)",
    )


WEB_PORT = limits.Whole(1, 65_535)


def add_web_command(commands: Any) -> None:
    """`web`: the dashboard (docs/dashboard.md), read-only unless actions are allowed."""
    web = commands.add_parser("web", help="the web dashboard: jobs, timelines, charts")
    web.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default %(default)s)"
    )
    web.add_argument("--port", type=whole(WEB_PORT), default=8080, help="default 8080")
    web.add_argument(
        "--allow-actions",
        action="store_true",
        help="offer cancel and retry, as POST forms that must carry the token",
    )
    web.add_argument(
        "--token",
        default=os.environ.get("JOBTRAIL_WEB_TOKEN") or None,
        help="the token actions need (env JOBTRAIL_WEB_TOKEN, which `ps` does not show)",
    )
    web.set_defaults(handler=cli("web:cmd_web"))


def add_flow_commands(commands: Any) -> None:
    """`limit`, `pause`, `resume` and `queues`: what workers may claim, changed live."""
    limit = commands.add_parser(
        "limit", help="concurrency limits: most jobs of a type (or per key) running at once"
    ).add_subparsers(dest="limit_command", required=True, metavar="ACTION")
    limit_set = limit.add_parser("set", help="set (or change) a limit")
    limit_set.add_argument("job_type", metavar="TYPE")
    limit_set.add_argument("max_running", metavar="N", type=whole(limits.MAX_RUNNING))
    limit_remove = limit.add_parser("remove", help="remove a limit")
    limit_remove.add_argument("job_type", metavar="TYPE")
    for sub in (limit_set, limit_remove):
        sub.add_argument(
            "--per-key",
            action="store_true",
            help="the limit counts each concurrency key of the type on its own",
        )
        add_who(sub)
    limit_set.set_defaults(handler=cli("flow:cmd_limit_set"))
    limit_remove.set_defaults(handler=cli("flow:cmd_limit_remove"))
    limit_list = limit.add_parser("list", help="the limits in force")
    limit_list.add_argument("--json", action="store_true")
    limit_list.set_defaults(handler=cli("flow:cmd_limit_list"))

    for name, text in (
        ("pause", "stop claims from a queue (or, with --type, of a job type)"),
        ("resume", "let workers claim from a paused queue (or type) again"),
    ):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("name", metavar="QUEUE")
        sub.add_argument("--type", action="store_true", help="QUEUE names a job type instead")
        add_who(sub)
        sub.set_defaults(handler=cli(f"flow:cmd_{name}"))

    queues = commands.add_parser("queues", help="each queue's jobs by status, and what is paused")
    queues.add_argument("--json", action="store_true")
    queues.set_defaults(handler=cli("flow:cmd_queues"))


def add_who(parser: Any) -> None:
    parser.add_argument("--reason", help="why (recorded in the control log)")
    parser.add_argument("--actor", default="cli", help="who (recorded in the control log)")


def add_kafka_commands(commands: Any) -> None:
    relay = commands.add_parser(
        "relay", help="publish the event log to Kafka (one active relay, others stand by)"
    )
    add_relay_options(relay)
    relay.add_argument(
        "--until-caught-up", action="store_true", help="exit once every event is published"
    )
    add_metrics_options(relay)
    relay.set_defaults(handler=cli("relay:cmd_relay"))

    consume = commands.add_parser("consume", help="print the job events on the Kafka topic")
    add_kafka_options(consume)
    consume.add_argument("--group", help="consumer group; offsets are committed only with one")
    consume.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest record when the group has no committed offset",
    )
    consume.add_argument("--json", action="store_true", help="one JSON envelope per line")
    consume.add_argument(
        "--until-idle",
        type=positive_float,
        metavar="SECONDS",
        help="exit when no record arrived for this long (counted from the start too)",
    )
    consume.add_argument(
        "--connect-timeout",
        type=positive_float,
        default=10.0,
        metavar="SECONDS",
        help="give up on an unreachable broker after this long (default %(default)s)",
    )
    add_metrics_options(consume)
    consume.set_defaults(handler=cli("consume:cmd_consume", database=False))


if __name__ == "__main__":
    sys.exit(main())
