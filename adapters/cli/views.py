"""`jobs`, `show`, `history` and `stats`: tables and timelines for people, ``--json`` for scripts.

Imported only when one of them runs (`main.Handler`): SQLAlchemy, the domain and rich, no
Kafka or Alembic.
"""

from __future__ import annotations

import argparse

from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.cli import render
from jobtrail.adapters.cli.timeline import print_timeline
from rich.text import Text


def cmd_jobs(trail: Jobtrail, args: argparse.Namespace) -> int:
    rows = trail.jobs(args.status, args.job_type, args.limit, args.queue)
    if args.json:
        render.print_json(rows)
        return 0
    out = render.console()
    out.print(render.job_table(rows, out.width))
    return 0


def cmd_show(trail: Jobtrail, args: argparse.Namespace) -> int:
    row = trail.get(args.job_id)
    retries = trail.queries.retries_of(row["id"])
    if args.json:
        render.print_json(
            {**row, "retries": [{"id": r["id"], "status": r["status"]} for r in retries]}
        )
        return 0
    original = trail.queries.get(row["retry_of"]) if row.get("retry_of") else None
    out = render.console()
    out.print(Text(f"job {row['id']}", style="bold"))
    for line in render.lineage(row, original, retries):
        out.print(line, overflow="fold")
    out.print(render.job_fields(row))
    out.print()
    print_timeline(out, row["id"], [e.envelope() for e in trail.history(row["id"])])
    return 0


def cmd_history(trail: Jobtrail, args: argparse.Namespace) -> int:
    events = [e.envelope() for e in trail.history(args.job_id)]
    if args.json:
        render.print_json(events)
        return 0
    print_timeline(render.console(), events[0]["job_id"], events)
    return 0


def cmd_stats(trail: Jobtrail, args: argparse.Namespace) -> int:
    stats = trail.stats().as_dict()
    if args.json:
        render.print_json(stats)
        return 0
    out = render.console()
    out.print(render.stats_table(stats["by_type"], out.width, stats["total"]))
    rate = stats["failure_rate"]
    out.print(f"failure rate: {'-' if rate is None else f'{rate:.1%}'}")
    queues = "; ".join(
        f"{queue} " + ", ".join(f"{status} {n}" for status, n in counts.items())
        for queue, counts in stats["by_queue"].items()
    )
    out.print(f"queues: {queues or '-'}", overflow="fold")
    codes = ", ".join(f"{code} {n}" for code, n in stats["error_codes"].items()) or "-"
    out.print(f"error codes: {codes}", overflow="fold")
    durations = ", ".join(
        f"{p} {'-' if v is None else f'{v:.3f} s'}" for p, v in stats["duration_seconds"].items()
    )
    out.print(f"duration (created → finished): {durations}")
    return 0
