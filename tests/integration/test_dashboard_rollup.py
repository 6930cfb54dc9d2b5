"""The latency rollup (`jobtrail.adapters.web.rollup`) against the SQL path, on both backends.

The SQL path (`DashboardQueries.latency`) is the oracle: for a mixed run with retries the
rollup must give exactly the same counts and percentiles in every bucket, for windows and
bucket widths cut anywhere, before and after more events arrive (its incremental catch-up).
"""

from __future__ import annotations

import random
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.web.app import create_app
from jobtrail.adapters.web.params import Window
from jobtrail.adapters.web.queries import DashboardQueries, Durations
from jobtrail.adapters.web.rollup import LatencyRollup, Series
from jobtrail.domain.retry import RetryPolicy
from jobtrail.processors.engine.worker import WorkerSettings
from sqlalchemy import text

with warnings.catch_warnings():  # Starlette 1.x asks for httpx2; httpx works the same
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

FAST = WorkerSettings(until_empty=True, poll_seconds=0.01, progress_seconds=0.05)
PAYLOADS = (
    {"duration_ms": 5},
    {"duration_ms": 1},
    {"fail_times": 1, "duration_ms": 3},
    {"fail_times": 2, "duration_ms": 1},
    {"credits": 0},
    {"crash": True},
    {"duration_ms": 20},
)


def run_mixed(trail: Jobtrail, jobs: int) -> None:
    """Submit ``jobs`` jobs of every kind (completions, retries, user and system failures,
    a cancel) and let a worker run them all."""
    trail.service.policy = RetryPolicy(base_delay=0)
    for index in range(jobs):
        job_type = "shot_video_generation" if index % 2 else "asset_image_generation"
        trail.submit(job_type, PAYLOADS[index % len(PAYLOADS)])
    cancelled = trail.submit("shot_video_generation", {}, delay=3600)
    trail.cancel(cancelled, "not needed")
    trail.worker(FAST).run()


def windows(since: datetime, until: datetime) -> list[Window]:
    """The whole run in buckets of several widths, and windows cut at odd microseconds."""
    cut = random.Random(7)
    found = [Window(since, until, width) for width in (1, 2, 60, 3600)]
    span = (until - since) // timedelta(microseconds=1)
    for _ in range(6):
        start = since + timedelta(microseconds=cut.randrange(span // 2))
        found.append(Window(start, until - timedelta(microseconds=cut.randrange(999_999)), 1))
    return found


def ordered(durations: list[Durations]) -> list[Durations]:
    return sorted(durations, key=lambda d: (d.kind, d.bucket))


def assert_same(trail: Jobtrail, rollup: LatencyRollup, since: datetime) -> None:
    queries = DashboardQueries(trail.engine)
    until = datetime.now(UTC) + timedelta(seconds=1)
    starts = 0
    for window in windows(since, until):
        expected = ordered(queries.latency(window))
        found = rollup.latency(window)
        assert found is not None
        assert ordered(found) == expected, window
        starts += sum(d.count for d in expected if d.kind == "wait")
    assert starts > 0


def last_position(trail: Jobtrail) -> int:
    with trail.engine.connect() as conn:
        return int(conn.execute(text("SELECT MAX(position) FROM job_events")).scalar_one())


def test_the_rollup_gives_the_sql_paths_numbers_and_catches_up(trail: Jobtrail) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    run_mixed(trail, 14)
    rollup = LatencyRollup(DashboardQueries(trail.engine))
    assert rollup.latency(Window(since, since + timedelta(hours=1), 60)) is None  # building
    assert rollup.wait_ready(30)
    assert rollup.position == last_position(trail)
    starts = sum(d.count for d in rollup.waits.percentiles(Window(since, datetime.now(UTC), 3600)))
    assert starts == 14 + 2 * 1 + 2 * 2  # one start a job, more for those that failed first
    assert_same(trail, rollup, since)

    before = rollup.position
    run_mixed(trail, 9)  # more events after the rollup was built
    assert rollup.catch_up() == last_position(trail) - before
    assert rollup.catch_up() == 0
    run_mixed(trail, 5)
    assert_same(trail, rollup, since)  # caught up by the chart's own call
    assert rollup.position == last_position(trail)
    assert len(rollup._started) == 0 and len(rollup._ready_at) == 0  # every job finished


def test_the_latency_page_reads_the_rollup_once_built(trail: Jobtrail) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    run_mixed(trail, 7)
    app = create_app(trail)
    with TestClient(app) as client:
        rollup: LatencyRollup = app.state.dashboard.rollup
        assert rollup.wait_ready(30)
        run_mixed(trail, 3)
        window = {"since": since.isoformat(), "until": datetime.now(UTC).isoformat()}
        page = client.get("/charts/latency", params={**window, "bucket": "1s"})
        assert page.status_code == 200
        assert rollup.position == last_position(trail)  # the request caught it up
        assert 'data-series="p99"' in page.text


def test_a_series_merges_late_points_in_time_order() -> None:
    mixed = random.Random(3)
    series = Series("wait", postgres=True)
    points = [(float(t), float(t), float(t % 7)) for t in range(1000)]
    batches = [points[i : i + 100] for i in range(0, 1000, 100)]
    for batch in batches:  # each batch overlaps the one before a little
        series.add([p for p in batch if mixed.random() < 0.8])
    series.add([p for p in points if p[0] not in set(series.keys)])
    assert list(series.keys) == [p[0] for p in points]
    assert list(series.seconds) == [p[2] for p in points]
    window = Window(datetime.fromtimestamp(0, UTC), datetime.fromtimestamp(1000, UTC), 100)
    found = series.percentiles(window)
    assert [d.count for d in found] == [100] * 10
    assert found[0].p50 == pytest.approx(3.0)
