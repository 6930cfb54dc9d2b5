"""`jobtrail schedule add|list|remove` and `jobtrail scheduler`: cron schedules.

Building the parser (`add_commands`) imports only the standard library and the CLI's
argument types, so `jobtrail --help` stays light; each handler imports the schedules
adapter (SQLAlchemy, cronsim) when it runs. The handlers are this module's own functions,
``f(trail, args)`` (like the audit group's), so this module never imports `main`.
What a command checks when it runs (a name, the expression, the zone, the catch-up policy,
the payload) is one line and exit status 1, nothing written.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobtrail.adapters.cli.args import positive_float, stop_on_signals, whole
from jobtrail.domain import limits

if TYPE_CHECKING:
    from jobtrail.adapters.bootstrap import Jobtrail
    from jobtrail.adapters.schedules import Schedule

LIST_COLUMNS = ("name", "cron", "timezone", "job_type", "catch_up", "last tick", "next tick")


def add_commands(commands: Any) -> None:
    """Add `schedule` (add, list, remove) and `scheduler` to the `jobtrail` subcommands."""
    schedule = commands.add_parser("schedule", help="cron schedules: add, list, remove")
    actions = schedule.add_subparsers(dest="schedule_command", required=True, metavar="ACTION")

    add = actions.add_parser(
        "add", help="add a schedule, or replace the one with this name; prints its next tick"
    )
    add.add_argument("name", metavar="NAME", help="1 to 160 printable characters")
    add.add_argument(
        "--cron", required=True, metavar="EXPR", help='five fields, e.g. "*/5 * * * *", or @daily'
    )
    add.add_argument("job_type", metavar="TYPE")
    add.add_argument("--payload", default="{}", help="a JSON object (default {})")
    add.add_argument(
        "--timezone",
        default="UTC",
        metavar="TZ",
        help="IANA zone the expression is read in, e.g. Europe/Berlin (default UTC)",
    )
    add.add_argument(
        "--catch-up",
        default="latest",
        metavar="latest|all|none",
        help="after a downtime: the most recent missed tick (default), every one (at most "
        "1000), or none",
    )
    add.add_argument(
        "--priority", type=whole(limits.PRIORITY), default=0, help="of each job (default 0)"
    )
    add.add_argument(
        "--max-attempts", type=whole(limits.MAX_ATTEMPTS), default=3, help="1 to 1000 (default 3)"
    )
    add.add_argument("--queue", default="default", help="the queue its jobs wait in")
    add_who(add)
    add.set_defaults(handler=cmd_add)

    show = actions.add_parser("list", help="every schedule with its last and next tick")
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=cmd_list)

    remove = actions.add_parser("remove", help="delete a schedule (its jobs stay)")
    remove.add_argument("name", metavar="NAME")
    add_who(remove)
    remove.set_defaults(handler=cmd_remove)

    scheduler = commands.add_parser(
        "scheduler", help="enqueue due ticks of every schedule until stopped (workers do too)"
    )
    scheduler.add_argument(
        "--interval", type=positive_float, default=1.0, help="seconds between rounds (default 1)"
    )
    scheduler.add_argument("--once", action="store_true", help="one round, then exit")
    scheduler.set_defaults(handler=cmd_scheduler)


def add_who(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actor", default="cli", help="who makes the change (control log)")
    parser.add_argument("--reason", help="why (control log; at most 1000 characters)")


def cmd_add(trail: Jobtrail, args: argparse.Namespace) -> int:
    from jobtrail.adapters.cli.jobs import parse_payload
    from jobtrail.domain.job import Meta

    schedules = trail.schedules()
    change = schedules.add(
        args.name,
        args.cron,
        args.job_type,
        parse_payload(args.payload),
        timezone=args.timezone,
        catch_up=args.catch_up,
        priority=args.priority,
        max_attempts=args.max_attempts,
        queue=args.queue,
        reason=args.reason,
        meta=Meta(actor=args.actor),
    )
    schedule = schedules.get(args.name)
    print(
        f"{change} {schedule.name}: next tick {local_time(schedule, schedules.next_tick(schedule))}"
    )
    return 0


def cmd_list(trail: Jobtrail, args: argparse.Namespace) -> int:
    schedules = trail.schedules()
    found = schedules.list()
    now = trail.service.clock.now()
    if args.json:
        print(json.dumps([schedule.as_json(now) for schedule in found], indent=2))
        return 0
    rows = [
        (
            s.name,
            s.cron,
            s.timezone,
            s.job_type,
            s.catch_up,
            local_time(s, s.last_tick_at),
            local_time(s, s.next_tick(now)),
        )
        for s in found
    ]
    print_table(rows)
    return 0


def cmd_remove(trail: Jobtrail, args: argparse.Namespace) -> int:
    from jobtrail.domain.job import Meta

    removed = trail.schedules().remove(args.name, reason=args.reason, meta=Meta(actor=args.actor))
    print(f"removed {removed.name}")
    return 0


def cmd_scheduler(trail: Jobtrail, args: argparse.Namespace) -> int:
    schedules = trail.schedules()
    if args.once:
        created = schedules.run_due()  # an error is the command's: one line, exit 1
    else:
        loop = schedules.loop(args.interval)
        stop_on_signals(loop.stopping.set)
        created = loop.run()
    from jobtrail.adapters.cli.logs import summary  # plain, or JSON with --log-format json

    summary(f"enqueued {created} job(s)")
    return 0


def local_time(schedule: Schedule, moment: datetime | None) -> str:
    """A tick as people read it: in the schedule's zone, with its offset."""
    if moment is None:
        return "-"
    return moment.astimezone(schedule.parsed().zone).isoformat()


def print_table(rows: Sequence[tuple[str, ...]]) -> None:
    if not rows:
        print("no schedules")
        return
    header = tuple(column.upper().replace("_", " ") for column in LIST_COLUMNS)
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
