"""`jobs`, `show`, `history` and `stats`: tables and timelines for people, ``--json`` for scripts.

`show` answers for a job whose row was pruned from the `job` table too (from its events in
the log, saying so), and `show`/`history` name the archive of an archived job (exit 1).

Imported only when one of them runs (`main.Handler`): SQLAlchemy, the domain and rich, no
Kafka or Alembic.
"""

from __future__ import annotations

import argparse
from typing import Any

from jobtrail.adapters.bootstrap import FoundJob, Jobtrail
from jobtrail.adapters.cli import render
from jobtrail.adapters.cli.timeline import print_timeline
from jobtrail.adapters.sql.retention import JobArchived
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
    try:
        found = trail.find(args.job_id)
    except JobArchived as archived:
        return answer_archived(archived, args.json)
    row = found.row
    retries = trail.queries.retries_of(row["id"])
    if args.json:
        render.print_json(
            {
                **row,
                "retries": [{"id": r["id"], "status": r["status"]} for r in retries],
                **table_note(found),
            }
        )
        return 0
    original = trail.queries.get(row["retry_of"]) if row.get("retry_of") else None
    out = render.console()
    out.print(Text(f"job {row['id']}", style="bold"))
    if found.from_log:
        out.print(Text(row_gone_line(found), style="yellow"), overflow="fold")
    for line in render.lineage(row, original, retries):
        out.print(line, overflow="fold")
    out.print(render.job_fields(row))
    out.print()
    print_timeline(out, row["id"], [e.envelope() for e in trail.history(row["id"])])
    return 0


def table_note(found: FoundJob) -> dict[str, Any]:
    """``show --json``'s keys for a row shown from the log (none for a row of the table)."""
    if not found.from_log:
        return {}
    return {"job_table": "pruned" if found.pruned else "missing", "log_events": found.log_events}


def row_gone_line(found: FoundJob) -> str:
    """`show`'s line for a job whose row is not in the `job` table but whose events are."""
    events = f"{found.log_events} event{'s' if found.log_events != 1 else ''}"
    if found.pruned:
        gone = "row pruned from the job table"
    else:
        gone = "row not in the job table (no recorded prune explains it)"
    return f"{gone}; the log still holds its {events}, shown here (`jobtrail rebuild` restores it)"


def answer_archived(archived: JobArchived, as_json: bool) -> int:
    """An archived job: its archive as a JSON object (exit 1), or the one error line."""
    if not as_json:
        raise archived
    render.print_json(archived.as_dict())
    return 1


def cmd_history(trail: Jobtrail, args: argparse.Namespace) -> int:
    try:
        history = trail.history(args.job_id)
    except JobArchived as archived:
        return answer_archived(archived, args.json)
    events = [e.envelope() for e in history]
    if args.json:
        render.print_json(events)
        return 0
    print_timeline(render.console(), events[0]["job_id"], events)
    return 0


def cmd_stats(trail: Jobtrail, args: argparse.Namespace) -> int:
    stats = trail.stats(args.since).as_dict()
    if args.json:
        render.print_json(stats)
        return 0
    out = render.console()
    since = stats["finished_since"]
    out.print(f"jobs: {'all' if since is None else f'live, and finished since {since}'}")
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
