"""Worker benchmarks on PostgreSQL: throughput, latencies, memory, reaper, I/O-bound jobs.

Every figure is printed next to a peer measured in the same run: Procrastinate 3.x and
PgQueuer 1.x (PostgreSQL job queues; ``pip install -e '.[bench]'``), or the lease that had
to run out for the reaper.

1. throughput: N no-op jobs queued beforehand; seconds from "worker starts" to "all N
   jobs are in a terminal state", at each concurrency (jobtrail in this process, or as
   ``--processes`` CLI workers: `bench.worker_processes`), each run in its own database;
   beside each, Procrastinate at that concurrency and PgQueuer at each ``--pgqueuer-batch``.
2. latency: a processor raises a non-retryable error; seconds until the job's row shows
   ``failed`` to an observer thread polling on its own connection every ~1 ms. Another
   process submits the jobs one at a time, at a modest rate, while the worker runs.
3. memory: resident set size of a worker, in a fresh subprocess, while it runs N no-op
   jobs (sampled as it goes), and its peak.
4. reaper: a ``jobtrail worker --lease 2`` is SIGKILLed during a long job; seconds until a
   fresh ``jobtrail worker`` takes the job out of ``processing``.
5. io: jobs that each wait 0.1 s, 200 at once (`bench.io_bound`).
6. startup: submit call -> processor start on an idle worker (`bench.startup`).

    python -m bench.worker [--only throughput latency memory reaper io startup]
        [--jobs 10000] [--processes 1] [--pgqueuer-batch 10 100]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import io
import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, NoReturn

import psycopg
from jobtrail.domain.errors import InsufficientCredits
from jobtrail.processors.base import BaseProcessor, JobContext, JobView
from jobtrail.processors.registry import Registry

from bench import io_bound, pgqueuer_peer, startup, worker_processes
from bench.common import (
    REPO,
    Drain,
    PostgresDatabase,
    count_rows,
    drain_row,
    heading,
    jobtrail_cli,
    machine_load,
    measure,
    mib,
    open_trail,
    peak_rss_kib,
    percentile,
    rate,
    ratio,
    row,
    rss_kib,
    target,
    temp_postgres,
    vacuum_analyze,
    wait_until,
)
from bench.profiling import explaining_claim, profiling

if TYPE_CHECKING:
    import procrastinate
    from jobtrail.adapters.bootstrap import Jobtrail
    from jobtrail.processors.engine.worker import WorkerSettings
    from procrastinate.job_context import JobContext as ProcrastinateContext
    from procrastinate.tasks import Task

    AnyTask = Task[Any, Any, Any]

# The modules above are light. jobtrail's runtime and Procrastinate are imported where they
# are used, so that each memory subprocess carries only the system it measures.


Namespace = argparse.Namespace

NOOP = "bench_noop"
FAIL = "bench_fail"
LONG_JOB = "shot_video_generation"

JOBTRAIL_TERMINAL = "SELECT count(*) FROM job WHERE status IN ('completed', 'failed', 'cancelled')"
PROCRASTINATE_TERMINAL = (
    "SELECT count(*) FROM procrastinate_jobs"
    " WHERE status IN ('succeeded', 'failed', 'cancelled', 'aborted')"
)
JOBTRAIL_FAILED = "SELECT id FROM job WHERE status = 'failed' AND id = ANY(%s)"
PROCRASTINATE_FAILED = "SELECT id FROM procrastinate_jobs WHERE status = 'failed' AND id = ANY(%s)"
JOBTRAIL_TABLES = ("job", "job_events", "job_lease")
LEASE_ROW_EXPIRY = "SELECT lease_expires_at FROM job WHERE id = %s"
LEASE_TABLE_EXPIRY = "SELECT expires_at FROM job_lease WHERE job_id = %s"
PROCRASTINATE_TABLES = ("procrastinate_jobs",)


# ---------------------------------------------------------------------- what runs


class NoOp(BaseProcessor):
    """Does nothing; ``on_run`` (if given) is called first, on the processor's thread."""

    job_type = NOOP

    def __init__(self, on_run: Callable[[], None] | None = None) -> None:
        self.on_run = on_run

    def process(self, job: JobView, ctx: JobContext) -> None:
        if self.on_run is not None:
            self.on_run()


class AlwaysOutOfCredits(BaseProcessor):
    """Raises a non-retryable user error; ``on_raise(job id)`` is called just before."""

    job_type = FAIL

    def __init__(self, on_raise: Callable[[object], None]) -> None:
        self.on_raise = on_raise

    def process(self, job: JobView, ctx: JobContext) -> NoReturn:
        self.on_raise(job.id)
        raise InsufficientCredits("bench: always out of credits")


def noop_registry(on_run: Callable[[], None] | None = None) -> Registry:
    return Registry([NoOp(on_run)])


def worker_settings(**options: Any) -> WorkerSettings:
    from jobtrail.processors.engine.worker import WorkerSettings

    return WorkerSettings(**options)


def noop_settings(concurrency: int) -> WorkerSettings:
    return worker_settings(concurrency=concurrency, until_empty=True, poll_seconds=0.01)


def procrastinate_app(conninfo: str, concurrency: int) -> procrastinate.App:
    """An app whose pool holds a connection per concurrent job, plus two (LISTEN, fetch)."""
    import procrastinate

    size = concurrency + 2
    connector = procrastinate.PsycopgConnector(conninfo=conninfo, min_size=size, max_size=size)
    return procrastinate.App(connector=connector)


async def _noop_async() -> None:
    return None


def _noop_sync() -> None:
    return None


def noop_task(app: procrastinate.App, flavour: str, on_run: Callable[[], None] | None) -> AnyTask:
    """Procrastinate's no-op task: a coroutine (``async``) or a function run in a thread."""
    if flavour == "sync":

        def sync_noop() -> None:
            if on_run is not None:
                on_run()

        return app.task(name=NOOP)(sync_noop if on_run else _noop_sync)

    async def async_noop() -> None:
        if on_run is not None:
            on_run()

    return app.task(name=NOOP)(async_noop if on_run else _noop_async)


def quiet_procrastinate() -> None:
    """Procrastinate logs every failed job with its traceback; jobtrail's logs are off too."""
    logging.getLogger("procrastinate").setLevel(logging.CRITICAL)


# ---------------------------------------------------------------------- database helpers


def submit_noops(trail: Jobtrail, jobs: int, batch: int) -> None:
    from jobtrail.domain.services import JobSpec

    for first in range(0, jobs, batch):
        trail.submit_many([JobSpec(NOOP) for _ in range(min(batch, jobs - first))])


async def defer_noops(task: AnyTask, jobs: int, batch: int) -> None:
    for first in range(0, jobs, batch):
        await task.batch_defer_async(*({} for _ in range(min(batch, jobs - first))))


async def prepare_procrastinate(
    app: procrastinate.App, task: AnyTask, jobs: int, batch: int
) -> float:
    """Apply the schema and queue ``jobs`` no-op jobs; returns the seconds queueing took."""
    await app.schema_manager.apply_schema_async()
    start = time.perf_counter()
    await defer_noops(task, jobs, batch)
    return time.perf_counter() - start


# ---------------------------------------------------------------------- 1. throughput


def jobtrail_throughput(args: Namespace, concurrency: int) -> Drain:
    """In this process (``--processes 1``), or as ``--processes`` CLI workers."""
    with temp_postgres() as database, open_trail(database.url) as trail:
        _, enqueue = measure(lambda: submit_noops(trail, args.jobs, args.batch))
        vacuum_analyze(database.conninfo, JOBTRAIL_TABLES)
        if args.processes > 1:
            return worker_processes.drain(database, args.processes, concurrency, args.jobs, enqueue)
        worker = trail.worker(noop_settings(concurrency), registry=noop_registry())
        title = f"jobtrail worker, concurrency {concurrency}"
        profile = args.profile
        with explaining_claim(trail, database.conninfo, profile, title), profiling(profile, title):
            _, seconds = measure(worker.run)
        terminal = count_rows(database.conninfo, JOBTRAIL_TERMINAL)
    return Drain("jobtrail", f"concurrency {concurrency}", args.jobs, enqueue, seconds, terminal)


def procrastinate_throughput(jobs: int, concurrency: int, batch: int, flavour: str) -> Drain:
    async def run(conninfo: str) -> tuple[float, float]:
        app = procrastinate_app(conninfo, concurrency)
        task = noop_task(app, flavour, None)
        async with app.open_async():
            enqueue = await prepare_procrastinate(app, task, jobs, batch)
            await asyncio.to_thread(vacuum_analyze, conninfo, PROCRASTINATE_TABLES)
            start = time.perf_counter()
            await app.run_worker_async(
                concurrency=concurrency, wait=False, install_signal_handlers=False
            )
            return enqueue, time.perf_counter() - start

    with temp_postgres() as database:
        enqueue, seconds = asyncio.run(run(database.conninfo))
        terminal = count_rows(database.conninfo, PROCRASTINATE_TERMINAL)
    setting = f"concurrency {concurrency}"
    return Drain("Procrastinate", setting, jobs, enqueue, seconds, terminal)


def bench_throughput(args: Namespace) -> None:
    heading(
        f"1. Throughput: {args.jobs:,} no-op jobs queued beforehand (batches of {args.batch:,}),"
        " worker start -> all terminal"
    )
    print(
        f"  each run in its own database; Procrastinate: {args.task} no-op task, a pool of"
        " concurrency + 2 connections, run_worker_async(wait=False);"
    )
    print(
        "  PgQueuer: one process, drain mode, no cap on concurrent tasks, rerun beside each"
        " concurrency"
    )
    for concurrency in args.concurrency:
        ours = jobtrail_throughput(args, concurrency)
        procrastinate = procrastinate_throughput(args.jobs, concurrency, args.batch, args.task)
        pgqueuer = [pgqueuer_peer.throughput(args.jobs, b, args.batch) for b in args.pgqueuer_batch]
        print(f"  jobtrail {ours.setting}")
        for run in (ours, procrastinate, *pgqueuer):
            drain_row(run)
        for run in pgqueuer:
            row(f"  ratio jobtrail / PgQueuer {run.setting}", ratio(ours.rate, run.rate))
        best = max(pgqueuer, key=lambda run: run.rate)
        label = f"  ratio jobtrail / PgQueuer at its best ({best.setting})"
        row(label, ratio(ours.rate, best.rate), target(ours.rate, best.rate, 1.5))
        row(
            "  ratio jobtrail / Procrastinate",
            ratio(ours.rate, procrastinate.rate),
            target(ours.rate, procrastinate.rate, 10),
        )
    print("  DESIGN.md, not measured here: Procrastinate 3.10, concurrency 4 ~490 jobs/s")


# ---------------------------------------------------------------------- subprocesses


def child_command(kind: str, database: PostgresDatabase, args: Namespace) -> list[str]:
    """``python -m bench.worker --child KIND`` on ``database``, with this run's sizes."""
    return [
        sys.executable,
        "-m",
        "bench.worker",
        "--child",
        kind,
        "--child-url",
        database.url,
        "--child-conninfo",
        database.conninfo,
        "--task",
        args.task,
        "--failures",
        str(args.failures),
        "--failure-rate",
        str(args.failure_rate),
        "--memory-concurrency",
        str(args.memory_concurrency),
        "--memory-checkpoints",
        *map(str, args.memory_checkpoints),
    ]


def start_child(kind: str, database: PostgresDatabase, args: Namespace) -> subprocess.Popen[str]:
    return subprocess.Popen(
        child_command(kind, database, args),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def child_result(process: subprocess.Popen[str]) -> dict[str, Any]:
    """The JSON object a child printed last; raises if it failed."""
    out, err = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"{process.args!r} failed ({process.returncode}):\n{err}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def run_child(kind: str, database: PostgresDatabase, args: Namespace) -> dict[str, Any]:
    return child_result(start_child(kind, database, args))


# ---------------------------------------------------------------------- 2. failure latency


@dataclass
class FailureObserver:
    """Sees failed rows appear, on its own connection, for the jobs whose processors raised.

    ``raised(job_id)`` is called by the processor just before it raises (so the id is
    watched before its failure can be committed); ``run`` (a thread) polls every
    ``interval`` seconds for the ids not seen yet and records when each first appears
    (after the query's result arrived). ``on_done`` is called once all are seen.
    """

    conninfo: str
    query: str
    expected: int
    timeout: float
    interval: float = 0.001
    on_done: Callable[[], None] = lambda: None
    raised_at: dict[object, float] = field(default_factory=dict)
    seen_at: dict[object, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def raised(self, job_id: object) -> None:
        now = time.monotonic()
        with self._lock:
            self.raised_at[job_id] = now

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        deadline = time.monotonic() + self.timeout
        try:
            with psycopg.connect(self.conninfo, autocommit=True) as conn:
                while len(self.seen_at) < self.expected and not self._stop.is_set():
                    if time.monotonic() > deadline:
                        break
                    self._poll(conn)
                    time.sleep(self.interval)
        finally:
            self.on_done()

    def _poll(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            watched = [job_id for job_id in self.raised_at if job_id not in self.seen_at]
        if not watched:
            return
        rows = conn.execute(self.query, (watched,)).fetchall()
        now = time.monotonic()
        for (job_id,) in rows:
            self.seen_at[job_id] = now

    def latencies(self, skip: int) -> list[float]:
        """Seen minus raised, in the order the jobs raised, the first ``skip`` left out."""
        order = sorted(self.seen_at, key=self.raised_at.__getitem__)[skip:]
        return [self.seen_at[j] - self.raised_at[j] for j in order]


@dataclass(frozen=True)
class Latencies:
    system: str
    seconds: list[float]
    missing: int
    committed: list[float] = field(default_factory=list)
    """jobtrail's own raise -> commit figure (`WorkerStats.failure_latencies`)."""


def pace(count_: int, per_second: float) -> Iterator[float]:
    """For job ``i``, the seconds to sleep so it goes out at ``start + i / per_second``."""
    start = time.monotonic()
    for i in range(count_):
        yield max(0.0, start + i / per_second - time.monotonic())


def feed(count_: int, per_second: float, submit: Callable[[], object]) -> None:
    for delay in pace(count_, per_second):
        time.sleep(delay)
        submit()


def jobtrail_feed_child(args: Namespace) -> dict[str, Any]:
    """Submits the failing jobs one per transaction, paced, from its own process."""
    from jobtrail.adapters.bootstrap import connect

    trail = connect(args.child_url)
    submit = functools.partial(trail.submit, FAIL, max_attempts=1)
    _, seconds = measure(lambda: feed(args.failures, args.failure_rate, submit))
    return {"submitted": args.failures, "seconds": seconds}


def procrastinate_feed_child(args: Namespace) -> dict[str, Any]:
    """Defers the failing tasks one per transaction, paced, from its own process."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=args.child_conninfo))
    with app.open():
        deferrer = app.configure_task(FAIL)
        _, seconds = measure(lambda: feed(args.failures, args.failure_rate, deferrer.defer))
    return {"submitted": args.failures, "seconds": seconds}


def observer_timeout(args: Namespace) -> float:
    return float(args.failures / args.failure_rate + 60)


def jobtrail_latency(args: Namespace) -> Latencies:
    with temp_postgres() as database, open_trail(database.url) as trail:
        observer = FailureObserver(
            database.conninfo, JOBTRAIL_FAILED, args.failures, observer_timeout(args)
        )
        settings = worker_settings(concurrency=args.latency_concurrency, poll_seconds=0.01)
        worker = trail.worker(settings, registry=Registry([AlwaysOutOfCredits(observer.raised)]))
        observer.on_done = worker.stop
        watcher = threading.Thread(target=observer.run, name="observer", daemon=True)
        watcher.start()
        feeder = start_child("jobtrail-feed", database, args)
        try:
            stats = worker.run()
        finally:
            observer.stop()
            watcher.join()
            child_result(feeder)
    skip = args.latency_skip
    return Latencies(
        "jobtrail",
        observer.latencies(skip),
        args.failures - len(observer.seen_at),
        stats.failure_latencies[skip:],
    )


def procrastinate_latency(args: Namespace) -> Latencies:
    async def run(database: PostgresDatabase, observer: FailureObserver) -> None:
        app = procrastinate_app(database.conninfo, args.latency_concurrency)

        async def fail(context: ProcrastinateContext) -> NoReturn:
            observer.raised(context.job.id)
            raise RuntimeError("bench: always fails")

        app.task(name=FAIL, pass_context=True)(fail)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()
            done = asyncio.Event()
            loop = asyncio.get_running_loop()

            def wake() -> None:
                loop.call_soon_threadsafe(done.set)

            observer.on_done = wake
            watcher = threading.Thread(target=observer.run, name="observer", daemon=True)
            watcher.start()
            worker = asyncio.create_task(
                app.run_worker_async(
                    concurrency=args.latency_concurrency, install_signal_handlers=False
                )
            )
            feeder = start_child("procrastinate-feed", database, args)
            try:
                await done.wait()
            finally:
                worker.cancel()
                with suppress(asyncio.CancelledError):
                    await worker
                observer.stop()
                await asyncio.to_thread(watcher.join)
                await asyncio.to_thread(child_result, feeder)

    with temp_postgres() as database:
        observer = FailureObserver(
            database.conninfo, PROCRASTINATE_FAILED, args.failures, observer_timeout(args)
        )
        asyncio.run(run(database, observer))
    missing = args.failures - len(observer.seen_at)
    return Latencies("Procrastinate", observer.latencies(args.latency_skip), missing)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def latency_row(label: str, seconds: list[float]) -> None:
    if not seconds:
        row(label, "no samples")
        return
    row(
        label,
        f"p50 {ms(percentile(seconds, 50))}",
        f"p99 {ms(percentile(seconds, 99))}, max {ms(max(seconds))}, n={len(seconds)}",
    )


def bench_latency(args: Namespace) -> None:
    heading(
        f"2. Failure latency: {args.failures} jobs raising a non-retryable error,"
        f" concurrency {args.latency_concurrency}"
    )
    print(
        f"  jobs submitted one per transaction at {args.failure_rate:g}/s by another process"
        " while the worker runs; an observer thread on its own"
    )
    print(
        "  connection polls every ~1 ms; latency = row seen failed - processor raised;"
        f" first {args.latency_skip} left out"
    )
    ours = jobtrail_latency(args)
    peer = procrastinate_latency(args)
    latency_row("jobtrail: raise -> row shows failed", ours.seconds)
    latency_row("Procrastinate: raise -> row shows failed", peer.seconds)
    if ours.seconds and peer.seconds:
        p50 = ratio(percentile(ours.seconds, 50), percentile(peer.seconds, 50))
        p99 = ratio(percentile(ours.seconds, 99), percentile(peer.seconds, 99))
        row("ratio jobtrail / Procrastinate (lower is better)", f"p50 {p50}", f"p99 {p99}")
        met = "met" if percentile(ours.seconds, 99) < 0.010 else "MISSED"
        row("target: jobtrail p99 under 10 ms", met)
    latency_row("jobtrail's own count: raise -> commit", ours.committed)
    for result in (ours, peer):
        if result.missing:
            print(f"  WARNING: {result.system}: {result.missing} failures never seen")
    print("  DESIGN.md, not measured here: Procrastinate task raises -> failed ~8 ms median")


# ---------------------------------------------------------------------- 3. memory


@dataclass
class RssProbe:
    """Counts jobs as they run and samples RSS when the count reaches a checkpoint."""

    checkpoints: frozenset[int]
    samples: dict[int, int] = field(default_factory=dict)
    _counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __call__(self) -> None:
        n = next(self._counter)  # atomic under the GIL
        if n in self.checkpoints:
            self.samples[n] = rss_kib()


def memory_report(before: int, probe: RssProbe, seconds: float) -> dict[str, Any]:
    return {
        "before": before,
        "samples": probe.samples,
        "after": rss_kib(),
        "peak": peak_rss_kib(),
        "seconds": seconds,
    }


def jobtrail_memory_child(args: Namespace) -> dict[str, Any]:
    from jobtrail.adapters.bootstrap import connect

    trail = connect(args.child_url)
    with trail.engine.connect():
        pass  # the pool's first connection, as a started worker has
    probe = RssProbe(frozenset(args.memory_checkpoints))
    worker = trail.worker(noop_settings(args.memory_concurrency), registry=noop_registry(probe))
    before = rss_kib()
    _, seconds = measure(worker.run)
    return memory_report(before, probe, seconds)


def procrastinate_memory_child(args: Namespace) -> dict[str, Any]:
    probe = RssProbe(frozenset(args.memory_checkpoints))

    async def run() -> dict[str, Any]:
        app = procrastinate_app(args.child_conninfo, args.memory_concurrency)
        noop_task(app, args.task, probe)
        async with app.open_async():
            before = rss_kib()
            start = time.perf_counter()
            await app.run_worker_async(
                concurrency=args.memory_concurrency, wait=False, install_signal_handlers=False
            )
            return memory_report(before, probe, time.perf_counter() - start)

    return asyncio.run(run())


CHILDREN: dict[str, Callable[[Namespace], dict[str, Any]]] = {
    "jobtrail-memory": jobtrail_memory_child,
    "procrastinate-memory": procrastinate_memory_child,
    "jobtrail-feed": jobtrail_feed_child,
    "procrastinate-feed": procrastinate_feed_child,
}


def jobtrail_memory(args: Namespace) -> dict[str, Any]:
    with temp_postgres() as database:
        with open_trail(database.url) as trail:
            submit_noops(trail, args.memory_jobs, args.batch)
        vacuum_analyze(database.conninfo, JOBTRAIL_TABLES)
        report = run_child("jobtrail-memory", database, args)
        report["samples"] = {int(k): v for k, v in report["samples"].items()}
        report["terminal"] = count_rows(database.conninfo, JOBTRAIL_TERMINAL)
    return report


def procrastinate_memory(args: Namespace) -> dict[str, Any]:
    async def prepare(conninfo: str) -> None:
        app = procrastinate_app(conninfo, 1)
        task = noop_task(app, args.task, None)
        async with app.open_async():
            await prepare_procrastinate(app, task, args.memory_jobs, args.batch)

    with temp_postgres() as database:
        asyncio.run(prepare(database.conninfo))
        vacuum_analyze(database.conninfo, PROCRASTINATE_TABLES)
        report = run_child("procrastinate-memory", database, args)
        report["samples"] = {int(k): v for k, v in report["samples"].items()}
        report["terminal"] = count_rows(database.conninfo, PROCRASTINATE_TERMINAL)
    return report


def memory_row(label: str, ours: float, peer: float) -> None:
    print(f"  {label:<44} {mib(ours):>12} {mib(peer):>14} {ratio(ours, peer):>8}")


def bench_memory(args: Namespace) -> None:
    jobs = args.memory_jobs
    heading(
        f"3. Worker memory: {jobs:,} no-op jobs queued beforehand, concurrency"
        f" {args.memory_concurrency}, each worker in a fresh subprocess"
    )
    ours, peer = jobtrail_memory(args), procrastinate_memory(args)
    print(f"  {'RSS (VmRSS; peak = VmHWM)':<44} {'jobtrail':>12} {'Procrastinate':>14} ratio")
    memory_row("before the worker starts (imports, pool open)", ours["before"], peer["before"])
    marks = sorted(set(ours["samples"]) & set(peer["samples"]))
    for mark in marks:
        memory_row(f"after {mark:,} jobs", ours["samples"][mark], peer["samples"][mark])
    memory_row("after the worker returned", ours["after"], peer["after"])
    memory_row("peak", ours["peak"], peer["peak"])
    if len(marks) >= 2:
        first, last = marks[0], marks[-1]
        growth_ours = ours["samples"][last] - ours["samples"][first]
        growth_peer = peer["samples"][last] - peer["samples"][first]
        memory_row(f"growth from {first:,} to {last:,} jobs", growth_ours, growth_peer)
    print("  (peak is the child's VmHWM: ru_maxrss would include the parent's peak, kept")
    print("  by Linux across exec)")
    for name, report in (("jobtrail", ours), ("Procrastinate", peer)):
        print(
            f"  {name}: {report['terminal']:,}/{jobs:,} terminal,"
            f" {rate(jobs, report['seconds']):,.0f} jobs/s in the child"
        )


# ---------------------------------------------------------------------- 4. reaper


@dataclass(frozen=True)
class Reaping:
    lease_left: float
    """Seconds the lease still had to run when the worker was killed: the lower bound."""
    delay: float
    """Seconds from the kill until a poll saw the job out of ``processing``."""
    status: str
    event: str
    event_delay: float
    """Seconds from the kill to the ``recorded_at`` of the event the reaper appended."""


def status_of(conn: psycopg.Connection[Any], job_id: str) -> str:
    found = conn.execute("SELECT status FROM job WHERE id = %s", (job_id,)).fetchone()
    return str(found[0]) if found else "(none)"


def left_processing(conn: psycopg.Connection[Any], job_id: str) -> str | None:
    status = status_of(conn, job_id)
    return None if status == "processing" else status


def start_worker(env: dict[str, str], log: io.TextIOWrapper, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        jobtrail_cli("worker", *args),
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
    )


def kill(process: subprocess.Popen[bytes], signum: int = signal.SIGKILL) -> None:
    if process.poll() is None:
        process.send_signal(signum)
    process.wait(timeout=30)


def reap_once(
    trail: Jobtrail,
    conn: psycopg.Connection[Any],
    env: dict[str, str],
    log: io.TextIOWrapper,
    args: Namespace,
) -> Reaping:
    lease = ("--lease", f"{args.lease:g}", "--heartbeat", f"{args.heartbeat:g}")
    first = start_worker(env, log, *lease)
    job_id = trail.submit(LONG_JOB, {"duration_ms": 60_000}, max_attempts=2)
    try:
        wait_until(
            lambda: status_of(conn, job_id) == "processing", timeout=60, what="the job to start"
        )
    finally:
        killed_wall, killed = time.time(), time.monotonic()
        kill(first)
    expires = lease_expiry(conn, job_id)  # nobody renews it any more
    second = start_worker(env, log)
    try:
        status = wait_until(
            lambda: left_processing(conn, job_id),
            timeout=args.lease + 60,
            interval=0.002,
            what="the job to leave processing",
        )
        delay = time.monotonic() - killed
    finally:
        kill(second)
    event, recorded = reaper_event(conn, job_id)
    trail.cancel(job_id, reason="bench: done")
    return Reaping(expires - killed_wall, delay, status, event, recorded - killed_wall)


def lease_expiry(conn: psycopg.Connection[Any], job_id: str) -> float:
    """In the job's row, or in ``job_lease`` where the schema still has that table."""
    own_table = conn.execute("SELECT to_regclass('job_lease') IS NOT NULL").fetchone()
    query = LEASE_TABLE_EXPIRY if own_table and own_table[0] else LEASE_ROW_EXPIRY
    found = conn.execute(query, (job_id,)).fetchone()
    if found is None:
        raise RuntimeError(f"job {job_id} has no lease")
    return float(found[0].timestamp())


def reaper_event(conn: psycopg.Connection[Any], job_id: str) -> tuple[str, float]:
    """The type and ``recorded_at`` of the event that took the job out of processing."""
    found = conn.execute(
        "SELECT type, recorded_at FROM job_events WHERE job_id = %s"
        " AND type IN ('JobRetryScheduled', 'JobFailed') ORDER BY version LIMIT 1",
        (job_id,),
    ).fetchone()
    if found is None:
        raise RuntimeError(f"job {job_id}: no JobRetryScheduled or JobFailed event")
    return str(found[0]), float(found[1].timestamp())


def bench_reaper(args: Namespace) -> None:
    heading(
        f"4. Reaper delay after SIGKILL: `jobtrail worker --lease {args.lease:g}"
        f" --heartbeat {args.heartbeat:g}` killed mid-job, then `jobtrail worker` started"
    )
    print(
        "  delay = kill -> a poll (every 2 ms) sees the job out of 'processing';"
        " lower bound = lease left at the kill"
    )
    results: list[Reaping] = []
    with (
        temp_postgres() as database,
        open_trail(database.url) as trail,
        psycopg.connect(database.conninfo, autocommit=True) as conn,
        open(os.devnull, "w") as log,
    ):
        env = {**os.environ, "JOBTRAIL_DATABASE_URL": database.url}
        for n in range(1, args.reaper_reps + 1):
            result = reap_once(trail, conn, env, log, args)
            results.append(result)
            row(
                f"repetition {n}: kill -> {result.status}",
                f"{result.delay:.3f} s",
                f"lease left {result.lease_left:.3f} s ({ratio(result.delay, result.lease_left)});"
                f" {result.event} recorded at +{result.event_delay:.3f} s",
            )
    mean_delay = sum(r.delay for r in results) / len(results)
    mean_left = sum(r.lease_left for r in results) / len(results)
    row("mean delay", f"{mean_delay:.3f} s", f"lease {args.lease:g} s")
    row("mean lease left at the kill (the lower bound)", f"{mean_left:.3f} s")
    row("ratio mean delay / mean lower bound", ratio(mean_delay, mean_left))
    row("mean delay beyond the lease", f"{mean_delay - mean_left:.3f} s")


# ---------------------------------------------------------------------- main


PARTS: dict[str, Callable[[Namespace], None]] = {
    "throughput": bench_throughput,
    "latency": bench_latency,
    "memory": bench_memory,
    "reaper": bench_reaper,
    "io": io_bound.bench_io,
    "startup": startup.bench_startup,
}


def parse_args(argv: Sequence[str] | None = None) -> Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    add = parser.add_argument
    add("--only", nargs="+", choices=list(PARTS), default=list(PARTS), help="parts to run")
    add("--task", choices=["async", "sync"], default="async", help="Procrastinate no-op task")
    add("--batch", type=int, default=1000, help="jobs per submit_many / batch_defer call")
    # 1. throughput
    add("--jobs", type=int, default=10_000, help="no-op jobs per throughput run")
    add("--concurrency", type=int, nargs="+", default=[4, 16], help="throughput concurrencies")
    add("--profile", action="store_true", help="cProfile the jobtrail throughput runs")
    add("--processes", type=int, default=1, help="jobtrail worker processes (throughput)")
    add("--pgqueuer-batch", type=int, nargs="+", default=[10, 100], help="PgQueuer batch sizes")
    # 2. latency
    add("--failures", type=int, default=300, help="failing jobs per latency run")
    add("--failure-rate", type=float, default=50.0, help="failing jobs submitted per second")
    add("--latency-concurrency", type=int, default=4)
    add("--latency-skip", type=int, default=10, help="first failures left out (warm-up)")
    # 3. memory
    add("--memory-jobs", type=int, default=20_000, help="no-op jobs the memory worker runs")
    add("--memory-concurrency", type=int, default=4)
    add(
        "--memory-checkpoints",
        type=int,
        nargs="+",
        default=[1000, 5000, 10_000, 15_000, 20_000],
        help="job counts at which RSS is sampled",
    )
    # 4. reaper
    add("--reaper-reps", type=int, default=5, help="kill-and-reap repetitions")
    add("--lease", type=float, default=2.0, help="lease of the worker that is killed (s)")
    add("--heartbeat", type=float, default=0.5, help="heartbeat of that worker (s)")
    io_bound.add_arguments(parser)  # 5. io
    startup.add_arguments(parser)  # 6. startup
    # internal: the memory subprocesses
    add("--child", choices=list(CHILDREN), help=argparse.SUPPRESS)
    add("--child-url", help=argparse.SUPPRESS)
    add("--child-conninfo", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.memory_checkpoints = sorted(c for c in args.memory_checkpoints if c <= args.memory_jobs)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    quiet_procrastinate()
    pgqueuer_peer.quiet()
    if args.child:
        print(json.dumps(CHILDREN[args.child](args)))
        return
    print(
        f"bench.worker: jobtrail's worker vs Procrastinate {version('procrastinate')} and"
        f" PgQueuer {version('pgqueuer')} on PostgreSQL, same run, same machine"
    )
    machine_load("start")
    for name, bench in PARTS.items():
        if name in args.only:
            bench(args)
    machine_load("end")


if __name__ == "__main__":
    main()
