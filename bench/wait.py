"""`submit` + `wait` round trips on PostgreSQL, against the bare round trips beneath them.

A worker (own engine, ``poll_seconds`` 5 ms, no-op processor) runs in a thread of this
process on a throwaway database. Measured in alternating blocks, so all see the same load:

- API: ``trail.submit(no-op)`` then ``trail.wait(id)``, on a second `Jobtrail`; and the part
  of it from the job's ``completed_at`` (stamped by the worker before it writes the outcome,
  same clock) to the return of `wait`: the worker's write, the NOTIFY, the re-read;
- the wakeup alone: a thread waits for a queued job, the bench cancels it; from the start
  of ``cancel`` to the return of `wait` in the other thread, next to ``cancel`` alone;
- the physical limits: a bare ``SELECT 1`` round trip, and a bare NOTIFY → LISTEN round
  trip (one connection notifies, another receives it), raw psycopg, autocommit;
- then a few ``jobtrail submit --wait`` subprocesses, next to ``jobtrail submit`` alone
  (the process start and imports both pay).

    python -m bench.wait [--runs 500] [--cli-runs 10]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.processors.base import JobContext, JobView
from jobtrail.processors.engine.worker import WorkerSettings
from jobtrail.processors.registry import Registry

from bench.common import (
    PostgresDatabase,
    heading,
    machine_load,
    open_trail,
    percentile,
    row,
    run_interleaved,
    temp_postgres,
    timed,
)

NOOP = "bench_wait_noop"
CHANNEL = "bench_wait_ping"
POLL_SECONDS = 0.005


def noop_registry() -> Registry:
    registry = Registry()

    @registry.processor(NOOP)
    def noop(job: JobView, ctx: JobContext) -> dict[str, bool]:
        return {"ok": True}

    return registry


@contextmanager
def running_worker(url: str) -> Iterator[None]:
    """A worker on its own engine, in a thread, until the block ends."""
    trail = connect(url)
    worker = trail.worker(
        WorkerSettings(poll_seconds=POLL_SECONDS, progress_seconds=0), registry=noop_registry()
    )
    thread = threading.Thread(target=worker.run, name="bench-worker", daemon=True)
    thread.start()
    try:
        yield
    finally:
        worker.stop()
        thread.join(timeout=60)
        trail.close()


# ---------------------------------------------------------------------- probes


def submit_and_wait(trail: Jobtrail, wakes: list[float]) -> Callable[[], float]:
    """The timed round trip; also records completed_at → wait returned in ``wakes``."""

    def probe() -> float:
        started = time.perf_counter()
        row = trail.wait(trail.submit(NOOP), 30)
        took = time.perf_counter() - started
        wakes.append(datetime.now(UTC).timestamp() - row["completed_at"].timestamp())
        return took

    return probe


def cancel_and_wake(
    trail: Jobtrail, pool: ThreadPoolExecutor, cancels: list[float]
) -> Callable[[], float]:
    """From the start of ``cancel`` to the return of `wait` in another thread."""

    def wait(job_id: str) -> float:
        trail.wait(job_id, 30)
        return time.perf_counter()

    def probe() -> float:
        job_id = trail.submit(NOOP, delay=3600)  # not due: the worker leaves it alone
        returned = pool.submit(wait, job_id)
        time.sleep(0.02)  # the waiter has read the row and sleeps
        started = time.perf_counter()
        trail.cancel(job_id)
        cancels.append(time.perf_counter() - started)
        return returned.result(timeout=30) - started

    return probe


def select_one(conn: psycopg.Connection[Any]) -> Callable[[], float]:
    return lambda: timed(lambda: conn.execute("SELECT 1").fetchone())


def notify_listen(
    sender: psycopg.Connection[Any], listener: psycopg.Connection[Any]
) -> Callable[[], float]:
    listener.execute(f"LISTEN {CHANNEL}")

    def once() -> None:
        sender.execute(f"NOTIFY {CHANNEL}, 'x'")
        if not any(True for _ in listener.notifies(timeout=5, stop_after=1)):
            raise RuntimeError("the notification did not arrive within 5 s")

    return lambda: timed(once)


# ---------------------------------------------------------------------- the CLI


def cli_seconds(url: str, *args: str) -> float:
    argv = [sys.executable, "-m", "jobtrail", "--db", url, *args]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return took


def bench_cli(url: str, runs: int) -> None:
    heading(f"`jobtrail submit --wait` as a subprocess ({runs} runs each, alternating)")
    plain: list[float] = []
    waiting: list[float] = []
    cli_seconds(url, "submit", NOOP, "--wait")  # compiles the bytecode, warms the caches
    for _ in range(runs):
        plain.append(cli_seconds(url, "submit", NOOP))
        waiting.append(cli_seconds(url, "submit", NOOP, "--wait", "--timeout", "30"))
    show("jobtrail submit", plain)
    show("jobtrail submit --wait", waiting)
    row("difference of the medians (the wait)", ms(median(waiting) - median(plain)))


# ---------------------------------------------------------------------- output


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def show(label: str, values: Sequence[float]) -> None:
    row(f"{label}: p50", ms(percentile(values, 50)))
    row(f"{label}: p99", ms(percentile(values, 99)), f"n = {len(values)}")


def bench_api(database: PostgresDatabase, runs: int) -> None:
    heading(
        f"API `submit` + `wait` round trip for a no-op job ({runs} runs; worker poll"
        f" {POLL_SECONDS * 1000:g} ms) and the physical limits, alternating"
    )
    wakes: list[float] = []
    cancels: list[float] = []
    with (
        ThreadPoolExecutor(max_workers=1) as pool,
        open_trail(database.url) as trail,
        psycopg.connect(database.conninfo, autocommit=True) as plain,
        psycopg.connect(database.conninfo, autocommit=True) as sender,
        psycopg.connect(database.conninfo, autocommit=True) as listener,
    ):
        probes = [
            submit_and_wait(trail, wakes),
            cancel_and_wake(trail, pool, cancels),
            select_one(plain),
            notify_listen(sender, listener),
        ]
        waits, woken, selects, notifies = run_interleaved(probes, runs, block=50, warmup=20)
    wakes, cancels = wakes[20:], cancels[20:]  # not the warm-up's
    show("submit + wait", waits)
    show("completed_at -> wait returned", wakes)
    show("cancel -> wait returned in another thread", woken)
    show("cancel alone", cancels)
    show("bare SELECT 1 round trip", selects)
    show("bare NOTIFY -> LISTEN round trip", notifies)
    row("the wakeup beyond cancel alone (medians)", ms(median(woken) - median(cancels)))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=500, help="API round trips (timed)")
    parser.add_argument("--cli-runs", type=int, default=10, help="CLI runs of each kind")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    print("bench.wait: submit + wait on PostgreSQL (LISTEN/NOTIFY), same run, same machine")
    machine_load("start")
    with temp_postgres() as database, open_trail(database.url), running_worker(database.url):
        bench_api(database, args.runs)
        if args.cli_runs:
            bench_cli(database.url, args.cli_runs)
    machine_load("end")


if __name__ == "__main__":
    main()
