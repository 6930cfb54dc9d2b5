"""Start latency: a job submitted to an idle worker, from the submit call to its processor.

The worker runs idle in a subprocess of its own: ``jobtrail worker`` as a user starts it
(its defaults; the processor is this module's ``registry``, no cron scheduler), and
PgQueuer's worker in continuous mode (``python -m bench.pgqueuer_peer startup-worker``).
One warm-up job shows the worker is up; then the bench submits N jobs one at a time,
spaced out (default 200, 20 ms apart), each on its own call (``Jobtrail.submit``;
PgQueuer's ``enqueue`` on an asyncpg connection). Latency = the processor's ``time.time()``
when it starts - the bench's ``time.time()`` just before the submit call (one clock, two
processes). jobtrail's processor returns its start time as the job's result; PgQueuer's
worker prints its entrypoint's start times when it stops.

    python -m bench.worker --only startup [--startup-jobs 200] [--startup-spacing 0.02]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

import psycopg
from jobtrail.processors.base import BaseProcessor, JobContext, JobView
from jobtrail.processors.registry import Registry

from bench import pgqueuer_peer
from bench.common import (
    REPO,
    PostgresDatabase,
    count_rows,
    heading,
    jobtrail_cli,
    open_trail,
    percentile,
    ratio,
    row,
    temp_postgres,
    wait_until,
)

STAMP = "bench_startup"
JOBTRAIL_DONE = f"SELECT count(*) FROM job WHERE job_type = '{STAMP}' AND status = 'completed'"
JOBTRAIL_STARTS = "SELECT id, result FROM job WHERE job_type = %s"
TIMEOUT = 120.0
P50_TARGET, P99_TARGET = 0.005, 0.020

Submitted = dict[str, float]
"""Job id -> ``time.time()`` just before its submit call (or the processor's start)."""


class Stamp(BaseProcessor):
    """Returns when it started, so the bench can read it from the job's result."""

    job_type = STAMP

    def process(self, job: JobView, ctx: JobContext) -> dict[str, float]:
        return {"started": time.time()}


def registry() -> Registry:
    """``jobtrail worker --app bench.startup:registry``."""
    return Registry([Stamp()])


# ---------------------------------------------------------------------- what both do


def submit_paced(submit: Callable[[], str], jobs: int, spacing: float) -> Submitted:
    """Job ``i`` goes out at ``start + i * spacing``; each submit call's start is kept."""
    submitted: Submitted = {}
    start = time.monotonic()
    for i in range(jobs):
        time.sleep(max(0.0, start + i * spacing - time.monotonic()))
        called = time.time()
        submitted[submit()] = called
    return submitted


@contextmanager
def idle_worker(command: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """The worker subprocess, killed at the end of the block if still running; its stderr
    goes to a file, shown when the block fails."""
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:
            yield process
        except Exception as error:
            raise RuntimeError(f"{error}; the worker's log:\n{tail(log)}") from error
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()


def tail(log: IO[str]) -> str:
    log.seek(0)
    return log.read()[-4000:]


def stopped(process: subprocess.Popen[str]) -> str:
    """SIGTERM, then what the worker printed."""
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    return out


def until_ended(process: subprocess.Popen[str], ended: Callable[[], int], jobs: int) -> None:
    """Polls ``ended()`` until it reaches ``jobs``; a worker that exited stops the wait."""

    def done() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited ({process.returncode}) before its jobs ended")
        return ended() >= jobs

    wait_until(done, timeout=TIMEOUT, interval=0.01, what=f"{jobs} jobs to end")


def latencies(submitted: Submitted, started: Submitted) -> list[float]:
    return [started[job] - called for job, called in submitted.items() if job in started]


# ---------------------------------------------------------------------- the two sides


def jobtrail_side(args: argparse.Namespace) -> list[float]:
    with temp_postgres() as database, open_trail(database.url) as trail:
        env = {**os.environ, "JOBTRAIL_DATABASE_URL": database.url}
        command = jobtrail_cli("worker", "--app", "bench.startup:registry", "--no-scheduler")

        def submit() -> str:
            return trail.submit(STAMP)

        def ended() -> int:
            return count_rows(database.conninfo, JOBTRAIL_DONE)

        with idle_worker(command, env) as worker:
            submit()
            until_ended(worker, ended, 1)  # the warm-up: the worker is up and idle
            time.sleep(args.startup_spacing)
            submitted = submit_paced(submit, args.startup_jobs, args.startup_spacing)
            until_ended(worker, ended, args.startup_jobs + 1)
            stopped(worker)
        return latencies(submitted, jobtrail_starts(database))


def jobtrail_starts(database: PostgresDatabase) -> Submitted:
    with psycopg.connect(database.conninfo) as conn:
        found = conn.execute(JOBTRAIL_STARTS, (STAMP,)).fetchall()
    return {str(job_id): float(result["started"]) for job_id, result in found if result}


def pgqueuer_side(args: argparse.Namespace) -> list[float]:
    pgqueuer_peer.quiet()
    with temp_postgres() as database, asyncio.Runner() as loop:
        url = pgqueuer_peer.dsn(database)
        conn, queries = loop.run(pgqueuer_peer.connect(url))
        loop.run(queries.install())
        command = [sys.executable, "-m", "bench.pgqueuer_peer", "startup-worker", url]

        def submit() -> str:
            return str(loop.run(pgqueuer_peer.enqueue_one(queries)))

        def ended() -> int:
            return count_rows(database.conninfo, pgqueuer_peer.SUCCEEDED)

        try:
            with idle_worker(command, dict(os.environ)) as worker:
                submit()
                until_ended(worker, ended, 1)
                time.sleep(args.startup_spacing)
                submitted = submit_paced(submit, args.startup_jobs, args.startup_spacing)
                until_ended(worker, ended, args.startup_jobs + 1)
                started: dict[str, Any] = json.loads(stopped(worker).strip().splitlines()[-1])
        finally:
            loop.run(conn.close())
    return latencies(submitted, {job: float(at) for job, at in started.items()})


# ---------------------------------------------------------------------- the part


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def latency_row(label: str, seconds: list[float], jobs: int) -> None:
    if not seconds:
        row(label, "no samples")
        return
    p50, p99 = percentile(seconds, 50), percentile(seconds, 99)
    row(label, f"p50 {ms(p50)}", f"p99 {ms(p99)}, max {ms(max(seconds))}, n={len(seconds)}")
    if len(seconds) != jobs:
        print(f"    WARNING: {jobs - len(seconds)} jobs without a start time")


def bench_startup(args: argparse.Namespace) -> None:
    heading(
        f"6. Start latency: {args.startup_jobs} jobs submitted one at a time,"
        f" {args.startup_spacing * 1000:g} ms apart, to an idle worker in a subprocess"
    )
    print("  latency = the processor's time.time() at its start - the bench's just before the")
    print("  submit call; jobtrail: `jobtrail worker` with its defaults; PgQueuer: continuous mode")
    ours, peer = jobtrail_side(args), pgqueuer_side(args)
    latency_row("jobtrail: submit call -> processor start", ours, args.startup_jobs)
    latency_row("PgQueuer: enqueue call -> entrypoint start", peer, args.startup_jobs)
    if not (ours and peer):
        return
    p50, p99 = percentile(ours, 50), percentile(ours, 99)
    row(
        "ratio jobtrail / PgQueuer (lower is better)",
        f"p50 {ratio(p50, percentile(peer, 50))}",
        f"p99 {ratio(p99, percentile(peer, 99))}",
    )
    met = "met" if p50 <= P50_TARGET and p99 <= P99_TARGET else "NOT met"
    row("target: jobtrail p50 <= 5 ms and p99 <= 20 ms", met)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--startup-jobs", type=int, default=200, help="jobs of the startup part")
    add("--startup-spacing", type=float, default=0.02, help="seconds between their submits")
