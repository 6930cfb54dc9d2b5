"""PgQueuer (asyncpg) as a peer of jobtrail's worker and submit, measured in the same run.

PgQueuer keeps its queue in one table (``pgqueuer``), deletes a job's row when it ends and
logs each pick and end in ``pgqueuer_log``. It runs on asyncio: a dequeue claims up to
``batch_size`` jobs in one statement and starts each as a task, and an insert trigger
NOTIFYs the worker of new work. Its tables are installed with the default durability
(every table logged, as jobtrail's are).

Each function here opens its own asyncpg connection; the throughput and io runs each use a
fresh database (`temp_postgres`), queue their jobs before the worker starts, and time the
worker from ``PgQueuer.run`` (drain mode: it returns once the queue is empty and every task
has ended) to its return.

    python -m bench.pgqueuer_peer startup-worker DSN
        (internal: the idle worker of `bench.startup`; prints its jobs' start times)
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from bench.common import Drain, PostgresDatabase, count_rows, temp_postgres, vacuum_analyze

if TYPE_CHECKING:
    import asyncpg  # type: ignore[import-untyped]
    from pgqueuer.models import Job
    from pgqueuer.queries import Queries

NOOP = "bench_noop"
SLEEP = "bench_io_sleep"
STARTUP = "bench_startup"
TABLES = ("pgqueuer",)
FINAL = "('successful', 'exception', 'canceled', 'deleted', 'failed')"
TERMINAL = f"SELECT count(*) FROM pgqueuer_log WHERE status IN {FINAL}"
SUCCEEDED = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"

Entrypoint = Callable[["Job"], Awaitable[None]]


def quiet() -> None:
    """PgQueuer logs each failed job with its traceback, and more at INFO."""
    logging.getLogger("pgqueuer").setLevel(logging.WARNING)


def dsn(database: PostgresDatabase) -> str:
    """asyncpg takes a URL; SQLAlchemy's rendering of a plain ``postgresql`` URL is one."""
    return database.url


async def connect(url: str) -> tuple[asyncpg.Connection, Queries]:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    conn = await asyncpg.connect(url)
    return conn, Queries(AsyncpgDriver(conn))


async def enqueue(queries: Queries, entrypoint: str, jobs: int, batch: int) -> float:
    """Queue ``jobs`` jobs without payload in batches of ``batch``; returns the seconds."""
    start = time.perf_counter()
    for first in range(0, jobs, batch):
        size = min(batch, jobs - first)
        await queries.enqueue([entrypoint] * size, [None] * size, [0] * size)
    return time.perf_counter() - start


async def _drain(
    url: str,
    entrypoint: str,
    handler: Entrypoint,
    jobs: int,
    enqueue_batch: int,
    run_options: dict[str, Any],
    conninfo: str,
) -> tuple[float, float]:
    """Install, queue, vacuum, then run the worker in drain mode: (enqueue s, run s)."""
    from pgqueuer import PgQueuer
    from pgqueuer.types import QueueExecutionMode

    conn, queries = await connect(url)
    try:
        await queries.install()
        enqueue_seconds = await enqueue(queries, entrypoint, jobs, enqueue_batch)
        await asyncio.to_thread(vacuum_analyze, conninfo, TABLES)
        pgq = PgQueuer(queries.driver)
        pgq.entrypoint(entrypoint)(handler)
        start = time.perf_counter()
        await pgq.run(mode=QueueExecutionMode.drain, **run_options)
        return enqueue_seconds, time.perf_counter() - start
    finally:
        await conn.close()


def drain(
    entrypoint: str,
    handler: Entrypoint,
    jobs: int,
    enqueue_batch: int,
    setting: str,
    count_query: str = TERMINAL,
    **run_options: Any,
) -> Drain:
    """One drain-mode run in a fresh database; ``run_options`` go to ``PgQueuer.run``."""
    quiet()
    with temp_postgres() as database:
        enqueue_seconds, seconds = asyncio.run(
            _drain(
                dsn(database),
                entrypoint,
                handler,
                jobs,
                enqueue_batch,
                run_options,
                database.conninfo,
            )
        )
        ended = count_rows(database.conninfo, count_query)
    return Drain("PgQueuer", setting, jobs, enqueue_seconds, seconds, ended)


async def _noop(job: Job) -> None:
    return None


def throughput(jobs: int, batch_size: int, enqueue_batch: int) -> Drain:
    """No-op jobs; one process, no cap on concurrent tasks (a batch is dequeued whenever
    the previous dequeue returned jobs)."""
    return drain(NOOP, _noop, jobs, enqueue_batch, f"batch {batch_size}", batch_size=batch_size)


def io_bound(
    jobs: int, sleep: float, batch_size: int, max_concurrent: int, enqueue_batch: int
) -> Drain:
    """Jobs that ``await asyncio.sleep(sleep)``, at most ``max_concurrent`` at once.

    ``max_concurrent_tasks`` caps the jobs this worker holds (its dequeue claims no more);
    PgQueuer requires it to be at least twice ``batch_size``.
    """

    async def sleeper(job: Job) -> None:
        await asyncio.sleep(sleep)

    setting = f"batch {batch_size}, max_concurrent_tasks {max_concurrent}"
    return drain(
        SLEEP,
        sleeper,
        jobs,
        enqueue_batch,
        setting,
        SUCCEEDED,
        batch_size=batch_size,
        max_concurrent_tasks=max_concurrent,
    )


# ---------------------------------------------------------------------- bench.submit


class BatchEnqueue:
    """PgQueuer's batch ``enqueue`` called synchronously, for bench.submit's alternation.

    An event loop of its own (`asyncio.Runner`) holds the connection between batches.
    """

    def __init__(self, database: PostgresDatabase, size: int) -> None:
        self.size = size
        self._runner = asyncio.Runner()
        self._conn, self._queries = self._runner.run(connect(dsn(database)))
        self._runner.run(self._queries.install())

    def __call__(self, number: int) -> float:
        """Queue batch ``number``; only the ``enqueue`` call is timed, its lists built before."""
        first = number * self.size
        payloads: list[bytes | None] = [
            json.dumps({"shot": i}).encode() for i in range(first, first + self.size)
        ]
        entrypoints, priorities = [NOOP] * self.size, [0] * self.size
        start = time.perf_counter()
        self._runner.run(self._queries.enqueue(entrypoints, payloads, priorities))
        return time.perf_counter() - start

    def close(self) -> None:
        self._runner.run(self._conn.close())
        self._runner.close()


# ---------------------------------------------------------------------- bench.startup


async def enqueue_one(queries: Queries) -> int:
    """One job of the startup part; its id."""
    (job_id,) = await queries.enqueue(STARTUP, None)
    return int(job_id)


async def startup_worker(url: str) -> dict[int, float]:
    """An idle worker (continuous mode) until SIGTERM: job id -> ``time.time()`` at start."""
    from pgqueuer import PgQueuer

    quiet()
    started: dict[int, float] = {}
    conn, queries = await connect(url)
    pgq = PgQueuer(queries.driver)

    @pgq.entrypoint(STARTUP)
    async def record(job: Job) -> None:
        started[int(job.id)] = time.time()

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, pgq.shutdown.set)
    try:
        await pgq.run()
    finally:
        await conn.close()
    return started


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "startup-worker":
        raise SystemExit("usage: python -m bench.pgqueuer_peer startup-worker DSN")
    print(json.dumps(asyncio.run(startup_worker(args[1]))))


if __name__ == "__main__":
    main()
