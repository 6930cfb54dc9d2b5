"""`jobtrail demo`: a mixed batch of jobs run by real workers, on the configured database.

Successes, insufficient credits, transient failures that succeed on retry, an unknown
job type and a crash; a live progress bar; then the `job` table, the failure latency and
the history of one failed job; then a retry of the job of unknown type once a processor
for it is deployed, and a cron schedule.
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.cli import render
from jobtrail.adapters.cli.timeline import print_timeline
from jobtrail.domain.job import Meta
from jobtrail.domain.retry import RetryPolicy
from jobtrail.domain.services import JobSpec
from jobtrail.domain.status import JobStatus
from jobtrail.processors.engine.worker import WorkerSettings, WorkerStats
from jobtrail.processors.registry import FunctionProcessor, default_registry
from jobtrail.projections.stats import percentile
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

SHOT, ASSET, EXPORT = "shot_video_generation", "asset_image_generation", "storyboard_export"
DEMO = Meta(actor="demo")
BATCH = [
    *(JobSpec(SHOT, {"shot": n, "duration_ms": 400 + 100 * n}) for n in range(6)),
    *(JobSpec(ASSET, {"asset": n, "duration_ms": 300}) for n in range(6)),
    *(JobSpec(SHOT, {"shot": 10 + n, "credits": 0, "duration_ms": 300}) for n in range(3)),
    JobSpec(ASSET, {"asset": 20, "credits": 2, "cost": 5}),
    *(JobSpec(SHOT, {"shot": 30 + n, "fail_times": 1 + n % 2}, max_attempts=3) for n in range(3)),
    JobSpec(EXPORT, {"storyboard": 1}),
    JobSpec(ASSET, {"asset": 40, "crash": True}),
    JobSpec(ASSET, {"asset": 41, "fail_times": 5}, max_attempts=2),
]
DEMO_POLICY = RetryPolicy(base_delay=0.5, max_delay=2.0)


def cmd_demo(trail: Jobtrail, args: argparse.Namespace) -> int:
    run(trail, render.console())
    return 0


def run(trail: Jobtrail, out: Console) -> None:
    trail.init_db()
    trail.service.policy = DEMO_POLICY
    out.rule("jobtrail demo")
    ids = trail.submit_many(BATCH, DEMO)
    out.print(
        f"submitted {len(ids)} jobs: successes, user errors, retries, an unknown type, a crash"
    )

    worker = trail.worker(
        WorkerSettings(
            concurrency=4,
            until_empty=True,
            progress_seconds=0.2,
            lease_seconds=10,
            heartbeat_seconds=2,
        ),
        worker_id="demo-worker",
    )
    stats: list[WorkerStats] = []
    thread = threading.Thread(target=lambda: stats.append(worker.run()), daemon=True)
    started = time.monotonic()
    with worker_logs_quiet():
        thread.start()
        watch(trail, ids, thread, out)
        thread.join()
    out.print(f"all jobs finished in {time.monotonic() - started:.1f} s")

    rows = [trail.get(job_id) for job_id in ids]
    rows.sort(key=lambda r: (r["status"], r["job_type"]))
    out.print(render.job_table(rows, out.width, "the job table", short_ids=True))
    latencies = sorted(stats[0].failure_latencies) if stats else []
    if latencies:
        p50, p99 = (1000 * (percentile(latencies, p) or 0.0) for p in (50, 99))
        out.print(
            f"failure latency (raised → row failed): p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
            f"{len(latencies)} failures"
        )
    broke = next(r["id"] for r in rows if r["error_code"] == "insufficient_credits")
    out.print()
    print_timeline(out, broke, [e.envelope() for e in trail.history(broke)])
    out.print(f"the whole job: jobtrail show {broke}", overflow="ellipsis")
    unknown = next(r["id"] for r in rows if r["error_code"] == "unknown_job_type")
    retry_after_a_fix(trail, unknown, out)
    schedule_one(trail, out)


def retry_after_a_fix(trail: Jobtrail, failed: str, out: Console) -> None:
    """The fix for the unknown type is deployed (a processor for it), and the failed job is
    retried: a new job with ``retry_of``; the failed one's history stays as it was."""
    out.print()
    out.rule("retry after a fix")
    registry = default_registry()
    registry.register(FunctionProcessor(EXPORT, lambda job, ctx: {"pdf": "s3://demo/board.pdf"}))
    new = trail.retry(failed, reason="storyboard_export processor deployed", meta=DEMO)
    out.print(f"jobtrail retry {failed[:8]} → new job {new[:8]} (retry_of {failed[:8]})")
    worker = trail.worker(WorkerSettings(until_empty=True), registry, worker_id="demo-worker-2")
    with worker_logs_quiet():
        worker.run()
    row = trail.get(new)
    result = json.dumps(row["result"])
    out.print(f"job {new[:8]}: ", render.status_text(row["status"]), f" {result}", sep="")
    out.print(f"job {failed[:8]} is still {trail.get(failed)['status']}, its history untouched")


def schedule_one(trail: Jobtrail, out: Console) -> None:
    """A cron schedule: every worker enqueues its ticks, one job per tick."""
    out.print()
    out.rule("a schedule")
    schedules = trail.schedules()
    schedules.add(
        "demo-nightly-thumbnails",
        "30 2 * * *",
        ASSET,
        {"asset": 99},
        timezone="Europe/Berlin",
        reason="demo",
        meta=DEMO,
    )
    schedule = schedules.get("demo-nightly-thumbnails")
    due = schedules.next_tick(schedule)
    out.print("schedule demo-nightly-thumbnails: '30 2 * * *' in Europe/Berlin")
    out.print(f"next {ASSET} job at {due:%Y-%m-%d %H:%M} UTC, one per tick")


@contextmanager
def worker_logs_quiet() -> Iterator[None]:
    """The worker's warnings (an unknown job type) would break the progress bar; the job
    table tells the same story."""
    logger = logging.getLogger("jobtrail.worker")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def watch(trail: Jobtrail, ids: list[str], worker: threading.Thread, out: Console) -> None:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out, transient=False) as progress:
        task = progress.add_task("jobs finished", total=len(ids))
        while worker.is_alive():
            done = sum(JobStatus(trail.get(job_id)["status"]).is_terminal for job_id in ids)
            progress.update(task, completed=done)
            time.sleep(0.1)
        progress.update(task, completed=len(ids))
