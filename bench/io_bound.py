"""I/O-bound jobs: each sleeps, many at once; jobtrail async, jobtrail on threads, PgQueuer.

N jobs (default 2,000) queued beforehand, each waiting ``--io-sleep`` seconds (0.1), at
most ``--io-concurrency`` (200) at a time; seconds from the worker's start to all jobs
ended, each run in its own database:

- jobtrail, a processor whose ``process`` is ``async def`` and awaits ``asyncio.sleep``;
- jobtrail, the same wait as ``time.sleep`` in a plain processor, on as many threads;
- PgQueuer, an async entrypoint awaiting ``asyncio.sleep``, drain mode,
  ``max_concurrent_tasks`` the concurrency (its dequeue claims no more), at each dequeue
  batch of ``--io-pgqueuer-batch`` (20 and 100; at most half the concurrency, as PgQueuer
  requires); the ratio is taken against its best.

The bound is concurrency / sleep (2,000 jobs/s with the defaults). Only completed jobs
count: a worker that cannot run a coroutine processor fails its jobs, and the run says so.

    python -m bench.worker --only io [--io-jobs 2000] [--io-concurrency 200]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import TYPE_CHECKING

from jobtrail.processors.base import BaseProcessor, JobContext, JobView
from jobtrail.processors.registry import Registry

from bench import pgqueuer_peer
from bench.common import (
    Drain,
    count_rows,
    drain_row,
    heading,
    measure,
    open_trail,
    ratio,
    row,
    target,
    temp_postgres,
    vacuum_analyze,
)

if TYPE_CHECKING:
    from jobtrail.adapters.bootstrap import Jobtrail

ASYNC_SLEEP = "bench_io_async"
THREAD_SLEEP = "bench_io_thread"
COMPLETED = "SELECT count(*) FROM job WHERE status = 'completed'"
TABLES = ("job", "job_events", "job_lease")
RATE_TARGET = 1500.0


class AsyncSleep(BaseProcessor):
    """Waits on the worker's event loop: no thread is held while it sleeps."""

    job_type = ASYNC_SLEEP

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    async def process(self, job: JobView, ctx: JobContext) -> None:
        await asyncio.sleep(self.seconds)


class ThreadSleep(BaseProcessor):
    """The same wait on a processor thread."""

    job_type = THREAD_SLEEP

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def process(self, job: JobView, ctx: JobContext) -> None:
        time.sleep(self.seconds)


def submit(trail: Jobtrail, job_type: str, jobs: int, batch: int) -> None:
    """One attempt each: a job that fails is not retried (and so ends the run)."""
    from jobtrail.domain.services import JobSpec

    for first in range(0, jobs, batch):
        trail.submit_many(
            [JobSpec(job_type, max_attempts=1) for _ in range(min(batch, jobs - first))]
        )


def jobtrail_run(processor: BaseProcessor, args: argparse.Namespace, how: str) -> Drain:
    from jobtrail.processors.engine.worker import WorkerSettings

    settings = WorkerSettings(concurrency=args.io_concurrency, until_empty=True, poll_seconds=0.01)
    with temp_postgres() as database, open_trail(database.url) as trail:
        _, enqueue = measure(lambda: submit(trail, processor.job_type, args.io_jobs, args.batch))
        vacuum_analyze(database.conninfo, TABLES)
        worker = trail.worker(settings, registry=Registry([processor]))
        _, seconds = measure(worker.run)
        completed = count_rows(database.conninfo, COMPLETED)
    setting = f"{how}, concurrency {args.io_concurrency}"
    return Drain("jobtrail", setting, args.io_jobs, enqueue, seconds, completed)


def bench_io(args: argparse.Namespace) -> None:
    heading(
        f"5. I/O-bound: {args.io_jobs:,} jobs each waiting {args.io_sleep:g} s, at most"
        f" {args.io_concurrency} at once, worker start -> all ended"
    )
    bound = args.io_concurrency / args.io_sleep
    print(f"  each run in its own database; bound: concurrency / wait = {bound:,.0f} jobs/s")
    ours = jobtrail_run(AsyncSleep(args.io_sleep), args, "async processor")
    threads = jobtrail_run(ThreadSleep(args.io_sleep), args, "time.sleep on threads")
    peers = [pgqueuer_run(args, batch) for batch in args.io_pgqueuer_batch]
    for run in (ours, threads, *peers):
        drain_row(run, "completed")
    best = max(peers, key=lambda run: run.rate)
    row(f"PgQueuer's best: {best.setting}", f"{best.rate:,.0f} jobs/s")
    label = "ratio jobtrail async / PgQueuer at its best"
    if not ours.complete:
        row(label, "n/a", "the async processor's jobs did not all complete")
        return
    row(label, ratio(ours.rate, best.rate), target(ours.rate, best.rate, 0.9))
    met = "met" if ours.rate >= RATE_TARGET else "NOT met"
    row("jobtrail async processor", f"{ours.rate:,.0f} jobs/s", f"target >= 1,500: {met}")


def pgqueuer_run(args: argparse.Namespace, batch: int) -> Drain:
    """PgQueuer wants ``max_concurrent_tasks`` at least twice its batch."""
    batch = min(batch, args.io_concurrency // 2)
    return pgqueuer_peer.io_bound(
        args.io_jobs, args.io_sleep, batch, args.io_concurrency, args.batch
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--io-jobs", type=int, default=2000, help="jobs of the io part")
    add("--io-sleep", type=float, default=0.1, help="seconds each io job waits")
    add("--io-concurrency", type=int, default=200, help="io jobs at once")
    add(
        "--io-pgqueuer-batch",
        type=int,
        nargs="+",
        default=[20, 100],
        help="PgQueuer's dequeue batch sizes (io part)",
    )
