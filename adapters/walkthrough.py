"""`jobtrail demo`: the lifecycle walked through by hand on the configured database.

It plays the part of a worker with the same commands a worker issues, so every event it
shows is a real one in the log.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from adapters.api import Jobtrail
from domain.errors import CommandRejected, InsufficientCredits, RateLimited
from domain.job import Meta

WORKER = Meta(actor="worker-demo")


def run(trail: Jobtrail, out: Console) -> None:
    trail.init_db()
    service = trail.service
    out.rule("jobtrail walk-through")

    done = trail.submit("shot_video_generation", {"shot": 1, "credits": 10})
    service.start(done, "worker-demo", 30, WORKER)
    for percent in (25, 50, 75):
        service.report_progress(done, 1, percent, f"rendering frame batch {percent}", WORKER)
    service.complete(done, 1, {"video_url": "s3://renders/shot-1.mp4"}, WORKER)
    out.print(f"[green]completed[/]  {done}: started, three progress reports, completed")

    broke = trail.submit("asset_image_generation", {"asset": 7, "credits": 0})
    service.start(broke, "worker-demo", 30, WORKER)
    service.fail(broke, InsufficientCredits(), 1, WORKER)
    second = service.fail(broke, InsufficientCredits(), 1, WORKER)
    out.print(f"[red]failed[/]     {broke}: insufficient credits (a second fail: {second.value})")

    retried = trail.submit("shot_video_generation", {"shot": 2}, max_attempts=3)
    service.start(retried, "worker-demo", 30, WORKER)
    service.fail(retried, RateLimited(retry_after=0), 1, WORKER)
    service.start(retried, "worker-demo", 30, WORKER)
    service.complete(retried, 2, {"video_url": "s3://renders/shot-2.mp4"}, WORKER)
    out.print(f"[green]completed[/]  {retried}: rate limited once, retried, completed")

    cancelled = trail.submit("asset_image_generation", {"asset": 8})
    trail.cancel(cancelled, "asset deleted", Meta(actor="demo-user"))
    late = service.start(cancelled, "worker-demo", 30, WORKER)
    out.print(
        f"[magenta]cancelled[/]  {cancelled}: cancelled while queued (a late start: {late.value})"
    )
    try:
        service.complete(trail.submit("shot_video_generation", {}), 1, {}, WORKER)
    except CommandRejected as error:
        out.print(f"[yellow]refused[/]    completing a queued job: {error}")

    rows = {row["id"]: row for row in trail.jobs(limit=1000)}
    table = Table(
        "id", "type", "status", "attempt", "error_message", "duration (s)", title="the job table"
    )
    for job_id in (done, broke, retried, cancelled):
        row = rows[job_id]
        finished = row["completed_at"]
        duration = (finished - row["created_at"]).total_seconds() if finished else None
        table.add_row(
            job_id,
            row["job_type"],
            row["status"],
            str(row["attempt"]),
            row["error_message"] or "-",
            "-" if duration is None else f"{duration:.3f}",
        )
    out.print(table)

    history = Table(
        "v",
        "type",
        "actor",
        "data",
        "prev_hash",
        "hash",
        title=f"history of the failed job {broke}",
    )
    for event in trail.history(broke):
        history.add_row(
            str(event.version),
            event.type,
            event.actor,
            str(event.data()),
            event.prev_hash[:10] or "-",
            event.hash[:10],
        )
    out.print(history)

    before = trail.queries.all_rows()
    trail.rebuild()
    same = "identical" if trail.queries.all_rows() == before else "DIFFERENT"
    out.print(f"rebuilt the job table from the log: {same} to the live table")
