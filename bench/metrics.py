"""What the Prometheus metrics cost a worker, on PostgreSQL.

The same N no-op jobs run by one worker from "worker starts" to "all terminal", each run in
its own database, with the metrics observer off and on, alternating in ABBA order (off, on;
on, off; …) so that background noise and drift on the machine fall on both. With metrics
on, the worker's endpoint is served and scraped every second during the run (Prometheus'
default is 15 s). The ratio is the median rate on over the median rate off (the issue's
target: >= 0.95). Last, the observer alone: its CPU time per job (`started` + `completed`),
measured in-process, and what share of a job's time at the "off" rate that is.

    python -m bench.metrics [--jobs 10000] [--concurrency 4] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import urllib.request
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from jobtrail.adapters.metrics.server import serve
from jobtrail.adapters.metrics.worker import WorkerMetrics
from jobtrail.domain.job import Job

from bench.common import heading, machine_load, measure, open_trail, rate, ratio, row, temp_postgres
from bench.worker import (
    JOBTRAIL_TABLES,
    NOOP,
    noop_registry,
    noop_settings,
    submit_noops,
    vacuum_analyze,
)

BATCH = 1000
SCRAPE_SECONDS = 1.0


def scraping(port: int, stop: threading.Event, scrapes: list[int]) -> None:
    """Scrape the endpoint every `SCRAPE_SECONDS` until ``stop`` (counts them)."""
    while not stop.wait(SCRAPE_SECONDS):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            reply.read()
        scrapes.append(1)


def one_run(jobs: int, concurrency: int, metrics_on: bool) -> tuple[float, int]:
    """Jobs per second of one worker, and the scrapes made during the run."""
    with temp_postgres() as database, open_trail(database.url) as trail:
        submit_noops(trail, jobs, BATCH)
        vacuum_analyze(database.conninfo, JOBTRAIL_TABLES)
        settings, registry = noop_settings(concurrency), noop_registry()
        if not metrics_on:
            worker = trail.worker(settings, registry=registry)
            return rate(jobs, measure(worker.run)[1]), 0
        metrics = WorkerMetrics()
        server = serve(metrics.registry, 0)
        stop, scrapes = threading.Event(), []
        scraper = threading.Thread(target=scraping, args=(server.port, stop, scrapes))
        scraper.start()
        try:
            worker = trail.worker(settings, registry=registry, observer=metrics)
            _, seconds = measure(worker.run)
        finally:
            stop.set()
            scraper.join()
            server.stop()
        return rate(jobs, seconds), len(scrapes)


def observer_seconds_per_job(jobs: int = 100_000) -> float:
    """CPU seconds the observer adds to one job: `started` (queue wait) and `completed`."""
    now = datetime.now(UTC)
    job = Job(str(uuid.uuid4()), job_type=NOOP, available_at=now, started_at=now + timedelta(1))
    metrics = WorkerMetrics()
    start = time.process_time()
    for _ in range(jobs):
        metrics.started(job)
        metrics.completed(NOOP, 0.0001)
    return (time.process_time() - start) / jobs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    print("bench.metrics: worker throughput with the Prometheus observer off and on, PostgreSQL")
    machine_load("start")
    heading(f"{args.jobs:,} no-op jobs, one worker, concurrency {args.concurrency}, alternating")
    rates: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(1, args.rounds + 1):
        for metrics_on in (False, True) if round_ % 2 else (True, False):
            jobs_per_second, scrapes = one_run(args.jobs, args.concurrency, metrics_on)
            rates[metrics_on].append(jobs_per_second)
            label = f"round {round_}, metrics {'on' if metrics_on else 'off'}"
            note = f"({scrapes} scrapes)" if metrics_on else ""
            row(label, f"{jobs_per_second:,.0f} jobs/s", note)
        row(f"round {round_}, on / off", ratio(rates[True][-1], rates[False][-1]))
    off, on = statistics.median(rates[False]), statistics.median(rates[True])
    heading("result")
    row("median, metrics off", f"{off:,.0f} jobs/s")
    row("median, metrics on", f"{on:,.0f} jobs/s")
    row("on / off (target >= 0.95)", ratio(on, off))
    alone = observer_seconds_per_job()
    row("the observer alone, CPU per job", f"{alone * 1e6:.2f} us", f"{alone * off:.1%} of a job")
    machine_load("end")


if __name__ == "__main__":
    main()
