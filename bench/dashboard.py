"""The dashboard's pages and charts on a log of a million events (PostgreSQL).

The log is made and loaded as `bench.replay` does it (the domain's own histories, about four
events per job, COPY of the events and of the `job` rows `fold` makes, then VACUUM ANALYZE):
one job a second from 2025-01-01, 1 in 10 failing for credits, 1 in 20 retried once. Then
each page is requested through Starlette's TestClient (the whole app: routing, SQL,
templates, SVG; no network), a few untimed warm-ups first, and timed ``--requests`` times:
p50 and p99 against the 1-second target.

The latency chart reads the web process's rollup (`adapters/web/rollup.py`), built in the
background when the app starts: the bench waits for it (and prints how long the build took
and what it holds) before timing, and times the SQL path it falls back to meanwhile apart.

    python -m bench.dashboard [--events 1000000] [--requests 20]
"""

from __future__ import annotations

import argparse
import time
import warnings
from array import array
from collections.abc import Callable
from datetime import timedelta
from functools import partial

from jobtrail.adapters.bootstrap import connect
from jobtrail.adapters.web.app import create_app
from jobtrail.adapters.web.params import Window
from jobtrail.adapters.web.rollup import LatencyRollup
from sqlalchemy import text

from bench.common import heading, machine_load, measure, percentile, row, temp_postgres
from bench.rebuild import EPOCH
from bench.replay import make_database

with warnings.catch_warnings():  # Starlette 1.x asks for httpx2; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

TARGET = 1.0
WARM_UPS = 2


def pages(jobs: int, job_ids: list[str], page_20: str) -> dict[str, Callable[[int], str]]:
    """Each page to time, as a URL for the i-th request."""
    whole = f"since={EPOCH.isoformat()}&until={(EPOCH + timedelta(seconds=jobs + 60)).isoformat()}"
    hour_start = EPOCH + timedelta(seconds=jobs // 2)
    hour = f"since={hour_start.isoformat()}&until={(hour_start + timedelta(hours=1)).isoformat()}"
    day = f"since={hour_start.isoformat()}&until={(hour_start + timedelta(days=1)).isoformat()}"
    day_q = day.replace("+", "%2B")
    quote = whole.replace("+", "%2B")
    hour_q = hour.replace("+", "%2B")
    return {
        "jobs list (50 newest)": lambda i: "/jobs",
        "jobs list, page 20 (keyset cursor)": lambda i: page_20,
        "jobs filtered to failed": lambda i: "/jobs?status=failed",
        "jobs failed, one type, one hour": lambda i: (
            f"/jobs?status=failed&type=shot_video_generation&{hour_q}"
        ),
        "a job page (timeline + chain check)": lambda i: f"/jobs/{job_ids[i % len(job_ids)]}",
        "failures chart, whole window": lambda i: f"/charts/failures?{quote}",
        "failures chart, one hour": lambda i: f"/charts/failures?{hour_q}",
        "latency chart, whole window": lambda i: f"/charts/latency?{quote}",
        "latency chart, one day": lambda i: f"/charts/latency?{day_q}",
        "latency chart, one hour": lambda i: f"/charts/latency?{hour_q}",
    }


def sql_latency(rollup: LatencyRollup, jobs: int) -> Callable[[int], object]:
    """The SQL path the chart uses until the rollup is built, over one day."""
    since = EPOCH + timedelta(seconds=jobs // 2)
    window = Window(since, since + timedelta(days=1), 1800)
    return lambda i: rollup.queries.latency(window)


def rollup_size(rollup: LatencyRollup) -> str:
    arrays = {id(a): a for s in (rollup.waits, rollup.runs) for a in (s.keys, s.epochs, s.seconds)}
    held = sum(len(a) * a.itemsize for a in arrays.values() if isinstance(a, array))
    return (
        f"{len(rollup.waits):,} waits and {len(rollup.runs):,} runs in {held / 2**20:.1f} MiB "
        f"of arrays, {len(rollup._ready_at):,} unfinished jobs"
    )


def find_page_20(client: TestClient) -> str:
    """The URL of the 20th page of 50, followed link by link."""
    url = "/jobs"
    for _ in range(19):
        html = client.get(url).text
        url = html.split('id="next" href="')[1].split('"')[0].replace("&amp;", "&")
    return url


def time_page(client: TestClient, url: Callable[[int], str], requests: int) -> list[float]:
    for i in range(WARM_UPS):
        client.get(url(i))
    seconds = []
    for i in range(requests):
        response, took = measure(partial(client.get, url(i)))
        if response.status_code != 200:
            raise SystemExit(f"{url(i)}: {response.status_code}\n{response.text[:500]}")
        seconds.append(took)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    machine_load("before")
    with temp_postgres() as database:
        (events, jobs), load = measure(lambda: make_database(database, args.events))
        print(f"loaded {events:,} events of {jobs:,} jobs in {load:.0f} s")
        trail = connect(database.url)
        try:
            with trail.engine.connect() as conn:
                ids = list(
                    conn.execute(text("SELECT id FROM job ORDER BY random() LIMIT 50")).scalars()
                )
            app = create_app(trail)
            started = time.monotonic()
            with TestClient(app) as client:  # its startup starts the rollup's build
                rollup: LatencyRollup = app.state.dashboard.rollup
                if not rollup.wait_ready(600):
                    raise SystemExit("the latency rollup was not built in 10 minutes")
                took = time.monotonic() - started
                print(f"latency rollup built in {took:.1f} s: {rollup_size(rollup)}")
                page_20 = find_page_20(client)
                heading(f"dashboard on {events:,} events, {args.requests} requests each")
                for label, url in pages(jobs, ids, page_20).items():
                    seconds = time_page(client, url, args.requests)
                    p50, p99 = percentile(seconds, 50), percentile(seconds, 99)
                    verdict = "ok" if p99 < TARGET else "OVER the 1 s target"
                    row(label, f"p50 {p50 * 1000:6.0f} ms  p99 {p99 * 1000:6.0f} ms", verdict)
                fallback = [measure(partial(sql_latency(rollup, jobs), i))[1] for i in range(5)]
                p50, p99 = percentile(fallback, 50), percentile(fallback, 99)
                label = "(SQL path while building, one day, 5 runs)"
                row(label, f"p50 {p50 * 1000:6.0f} ms  p99 {p99 * 1000:6.0f} ms", "fallback")
        finally:
            trail.close()
    machine_load("after")


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"({time.monotonic() - started:.0f} s in all)")
