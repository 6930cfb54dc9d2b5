"""The worker runtime against a real database (PostgreSQL unless the test says otherwise)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.domain.errors import InsufficientCredits, LeaseExpired, StaleAttempt
from jobtrail.domain.events import TERMINAL_EVENT_TYPES
from jobtrail.domain.retry import RetryPolicy
from jobtrail.domain.services import JobSpec
from jobtrail.processors.base import JobContext, JobView
from jobtrail.processors.engine.worker import WorkerSettings, WorkerStats
from jobtrail.processors.registry import Registry

from tests.helpers import check_history, check_projection

pytestmark = pytest.mark.postgres

OLD_SYSTEM_QUERY = """
SELECT id, status, error_message,
       EXTRACT(EPOCH FROM (completed_at - created_at)) AS duration_seconds
FROM job WHERE id = %s
"""
FAST = WorkerSettings(until_empty=True, poll_seconds=0.01, progress_seconds=0.05)


def types_of(trail: Jobtrail, job_id: str) -> list[str]:
    return [e.type for e in trail.history(job_id)]


def run_worker(trail: Jobtrail, settings: WorkerSettings = FAST) -> WorkerStats:
    return trail.worker(settings).run()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until ``condition`` holds; returns the seconds it took."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - started


def test_the_old_systems_scenario_fails_at_once_and_once(pg_trail: Jobtrail) -> None:
    job_id = pg_trail.submit("shot_video_generation", {"credits": 0})
    run_worker(pg_trail)

    url = pg_trail.engine.url
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database
    ) as conn:
        row = conn.execute(OLD_SYSTEM_QUERY, (job_id,)).fetchone()
    assert row is not None
    _, status, message, seconds = row
    assert status == "failed"
    assert "insufficient credits" in message
    assert float(seconds) < 5
    assert types_of(pg_trail, job_id).count("JobFailed") == 1
    assert types_of(pg_trail, job_id) == ["JobQueued", "JobStarted", "JobFailed"]


def test_an_unknown_job_type_fails_from_queued_once(pg_trail: Jobtrail) -> None:
    job_id = pg_trail.submit("storyboard_export")
    stats = run_worker(pg_trail)
    assert types_of(pg_trail, job_id) == ["JobQueued", "JobFailed"]
    row = pg_trail.get(job_id)
    assert (row["status"], row["error_code"], row["attempt"]) == ("failed", "unknown_job_type", 0)
    assert stats.failed == 1


def test_transient_failures_are_retried_with_backoff_until_success(pg_trail: Jobtrail) -> None:
    pg_trail.service.policy = RetryPolicy(base_delay=0.2)
    job_id = pg_trail.submit("shot_video_generation", {"fail_times": 2}, max_attempts=3)
    run_worker(pg_trail)

    events = pg_trail.history(job_id)
    significant = [e for e in events if e.type != "JobProgressed"]
    assert [e.type for e in significant] == [
        "JobQueued",
        "JobStarted",
        "JobRetryScheduled",
        "JobStarted",
        "JobRetryScheduled",
        "JobStarted",
        "JobCompleted",
    ]
    retries = [e for e in significant if e.type == "JobRetryScheduled"]
    restarts = [e for e in significant if e.type == "JobStarted"][1:]
    for retry, restart in zip(retries, restarts, strict=True):
        waited = (restart.occurred_at - retry.occurred_at).total_seconds()
        assert waited >= retry.delay_seconds > 0  # type: ignore[attr-defined]
    assert pg_trail.get(job_id)["status"] == "completed"
    assert pg_trail.get(job_id)["attempt"] == 3


def test_progress_is_recorded_but_throttled(pg_trail: Jobtrail) -> None:
    job_id = pg_trail.submit("asset_image_generation", {"duration_ms": 600})
    run_worker(pg_trail, WorkerSettings(until_empty=True, poll_seconds=0.01, progress_seconds=0.25))
    progressed = [e for e in pg_trail.history(job_id) if e.type == "JobProgressed"]
    assert 1 <= len(progressed) < 10, "ten progress calls must be throttled to fewer events"
    assert pg_trail.get(job_id)["progress"] == 100


def test_a_stale_worker_cannot_complete_a_job_taken_over(pg_trail: Jobtrail) -> None:
    pg_trail.service.policy = RetryPolicy(base_delay=0)
    job_id = pg_trail.submit("t", max_attempts=3)
    pg_trail.service.start(job_id, "slow-worker", 0.05)
    time.sleep(0.1)
    assert pg_trail.reaper().reap_once() == 1
    pg_trail.service.start(job_id, "fresh-worker", 30)

    with pytest.raises(StaleAttempt):
        pg_trail.service.complete(job_id, 1, "late result")
    with pytest.raises(StaleAttempt):
        pg_trail.service.fail(job_id, LeaseExpired(), 1)

    pg_trail.service.complete(job_id, 2, "fresh result")
    row = pg_trail.get(job_id)
    assert (row["status"], row["result"], row["worker_id"]) == (
        "completed",
        "fresh result",
        "fresh-worker",
    )
    check_history(job_id, pg_trail.history(job_id))


def test_a_running_job_is_cancelled_cooperatively(pg_trail: Jobtrail) -> None:
    job_id = pg_trail.submit("shot_video_generation", {"duration_ms": 20_000})
    worker = pg_trail.worker(
        WorkerSettings(heartbeat_seconds=0.1, poll_seconds=0.01, until_empty=True)
    )
    thread = threading.Thread(target=worker.run)
    thread.start()
    wait_for(lambda: pg_trail.get(job_id)["status"] == "processing", 10, "the job to start")

    pg_trail.cancel(job_id, "storyboard deleted")
    thread.join(timeout=10)

    assert not thread.is_alive(), "the processor did not notice the cancellation"
    assert types_of(pg_trail, job_id)[-1] == "JobCancelled"
    assert sum(t in TERMINAL_EVENT_TYPES for t in types_of(pg_trail, job_id)) == 1
    assert worker.stats.absorbed == 1 and worker.stats.completed == 0


@pytest.fixture
def cli_env(postgres_url: str) -> Iterator[dict[str, str]]:
    yield {**os.environ, "JOBTRAIL_DATABASE_URL": postgres_url, "PYTHONUNBUFFERED": "1"}


def start_cli_worker(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jobtrail", "worker", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


ASYNC_APP = ("--app", "tests.fixtures.async_processors:registry")
"""The same sample job types, as async processors (tests/integration/test_async_processors.py)."""


@pytest.mark.parametrize("app", [(), ASYNC_APP], ids=["threads", "async"])
def test_a_killed_worker_s_job_is_reaped_and_retried(
    pg_trail: Jobtrail, cli_env: dict[str, str], app: tuple[str, ...]
) -> None:
    job_id = pg_trail.submit("shot_video_generation", {"duration_ms": 60_000}, max_attempts=2)
    env = {k: v for k, v in cli_env.items() if k != "JOBTRAIL_APP"}
    doomed = start_cli_worker(env, *app, "--lease", "1", "--heartbeat", "0.2")
    try:
        wait_for(lambda: pg_trail.get(job_id)["status"] == "processing", 20, "the job to start")
    finally:
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()

    pg_trail.service.policy = RetryPolicy(base_delay=0)
    reaper = pg_trail.reaper()
    took = wait_for(
        lambda: reaper.reap_once() > 0 or pg_trail.get(job_id)["status"] != "processing",
        15,
        "the lease to expire and the reaper to fail the job",
    )
    assert took < 15
    events = pg_trail.history(job_id)
    retry = next(e for e in events if e.type == "JobRetryScheduled")
    assert retry.error_code == "lease_expired"  # type: ignore[attr-defined]
    assert pg_trail.get(job_id)["status"] == "queued"


def test_sigterm_hands_running_jobs_back_after_the_grace_period(
    pg_trail: Jobtrail, cli_env: dict[str, str]
) -> None:
    quick = pg_trail.submit("asset_image_generation", {"duration_ms": 300})
    slow = pg_trail.submit("shot_video_generation", {"duration_ms": 60_000}, max_attempts=3)
    worker = start_cli_worker(cli_env, "--grace", "1.5", "--concurrency", "2")
    wait_for(lambda: pg_trail.get(slow)["status"] == "processing", 20, "the slow job to start")

    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=20)

    assert worker.returncode == 0, output
    assert pg_trail.get(quick)["status"] == "completed"
    row = pg_trail.get(slow)
    assert (row["status"], row["error_code"]) == ("queued", "worker_shutdown"), output
    assert "SIGTERM: stopping" in output


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_mixed_batch_ends_as_the_payloads_say(
    request: pytest.FixtureRequest, backend: str
) -> None:
    from jobtrail.adapters.bootstrap import connect

    trail = connect(request.getfixturevalue(f"{backend}_url"), policy=RetryPolicy(base_delay=0.05))
    specs = {
        "ok": JobSpec("shot_video_generation", {"duration_ms": 20}),
        "broke": JobSpec("asset_image_generation", {"credits": 1, "cost": 2}),
        "flaky": JobSpec("asset_image_generation", {"fail_times": 1}, max_attempts=2),
        "hopeless": JobSpec("asset_image_generation", {"fail_times": 9}, max_attempts=2),
        "crash": JobSpec("shot_video_generation", {"crash": True}),
        "bad": JobSpec("shot_video_generation", {"credits": "lots"}),
        "unknown": JobSpec("storyboard_export"),
    }
    ids = dict(zip(specs, trail.submit_many(list(specs.values())), strict=True))
    stats = trail.worker(WorkerSettings(concurrency=3, until_empty=True, poll_seconds=0.01)).run()

    outcome = {
        name: (trail.get(i)["status"], trail.get(i)["error_code"]) for name, i in ids.items()
    }
    assert outcome == {
        "ok": ("completed", None),
        "broke": ("failed", "insufficient_credits"),
        "flaky": ("completed", None),
        "hopeless": ("failed", "upstream_timeout"),
        "crash": ("failed", "unexpected_error"),
        "bad": ("failed", "invalid_input"),
        "unknown": ("failed", "unknown_job_type"),
    }
    assert (
        trail.get(ids["crash"])["error_message"] == "RuntimeError: simulated crash in the renderer"
    )
    assert trail.get(ids["crash"])["error_category"] == "system"
    assert (stats.completed, stats.failed, stats.retried) == (2, 5, 2)
    for job_id in ids.values():
        check_history(job_id, trail.history(job_id))
        check_projection(trail, job_id)
    trail.close()


def test_a_worker_rides_out_lost_database_connections(pg_trail: Jobtrail) -> None:
    ids = pg_trail.submit_many(
        [JobSpec("asset_image_generation", {"duration_ms": 30}, max_attempts=5) for _ in range(60)]
    )
    # A claim whose commit is acknowledged on a connection that dies is not known to the
    # worker: its jobs come back when their (short) lease expires.
    pg_trail.service.policy = RetryPolicy(base_delay=0)
    worker = pg_trail.worker(
        WorkerSettings(
            concurrency=4,
            until_empty=True,
            poll_seconds=0.005,
            lease_seconds=2,
            heartbeat_seconds=0.5,
            reap_seconds=0.2,
        )
    )
    thread = threading.Thread(target=worker.run)
    url = pg_trail.engine.url
    killed = 0
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True
    ) as admin:
        thread.start()
        until = time.monotonic() + 1.5
        while thread.is_alive() and time.monotonic() < until:
            killed += len(
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND state <> 'idle'"
                ).fetchall()
            )
            time.sleep(0.01)
        thread.join(timeout=60)

    assert not thread.is_alive()
    assert killed > 0, "no connection was killed mid-transaction"
    for job_id in ids:
        events = pg_trail.history(job_id)
        check_history(job_id, events)
        assert sum(e.type in TERMINAL_EVENT_TYPES for e in events) == 1, [e.type for e in events]
        check_projection(pg_trail, job_id)
    assert {pg_trail.get(i)["status"] for i in ids} == {"completed"}


def test_a_turn_that_carries_a_failure_claims_nothing_and_the_next_claims_at_once(
    pg_trail: Jobtrail,
) -> None:
    """Failures take the shortest turn; a stream of them cannot starve the claims."""
    worker = pg_trail.worker(WorkerSettings(concurrency=1, prefetch=2))
    failing = {"credits": 0, "duration_ms": 0}
    a, b, c = (pg_trail.submit("asset_image_generation", failing) for _ in range(3))

    def status(job_id: str) -> str:
        return str(pg_trail.get(job_id)["status"])

    def run_next() -> None:
        running = worker._todo.get_nowait()
        assert running is not None
        worker._done.put(worker._process(running))

    assert worker._exchange() == 2  # a and b, in either order
    run_next()
    assert worker._exchange() == 0  # writes the first failure only
    assert status(c) == "queued"
    assert worker._claim_next, "the main loop must not wait for results before claiming"
    run_next()
    assert worker._exchange() == 1  # carries the second failure, and claims c anyway
    assert status(c) == "processing"
    assert {status(a), status(b)} == {"failed"}


def test_progress_reported_just_before_returning_is_kept_in_order(trail: Jobtrail) -> None:
    """A processor that reports progress and returns at once: both outcomes are written, in
    the order they happened (a peeked outcome once went to the back of the line and the
    progress was refused as coming after the completion)."""
    registry = Registry()

    @registry.processor("quick")
    def quick(job: JobView, ctx: JobContext) -> dict[str, int]:
        ctx.progress(99, "almost")
        return {"n": 1}

    ids = [trail.submit("quick") for _ in range(30)]
    stats = trail.worker(FAST, registry=registry).run()

    assert stats.completed == 30 and stats.absorbed == 0
    for job_id in ids:
        assert types_of(trail, job_id) == [
            "JobQueued",
            "JobStarted",
            "JobProgressed",
            "JobCompleted",
        ]


def test_a_batch_runs_in_the_order_it_was_claimed_priority_first(pg_trail: Jobtrail) -> None:
    """The claim picks by priority; the jobs of a batch are then run in that order, not in
    the order of their ids."""
    registry = Registry()
    ran: list[int] = []

    @registry.processor("ordered")
    def ordered(job: JobView, ctx: JobContext) -> None:
        ran.append(job.payload["priority"])

    priorities = [3, -1, 7, 0, 7, 2, 5, -4, 1, 6, 4, -2]
    pg_trail.submit_many([JobSpec("ordered", {"priority": p}, priority=p) for p in priorities])
    settings = WorkerSettings(
        concurrency=1, prefetch=len(priorities), until_empty=True, poll_seconds=0.01
    )
    stats = pg_trail.worker(settings, registry=registry).run()

    assert stats.completed == len(priorities)
    assert ran == sorted(priorities, reverse=True)


def test_stats_and_log_lines_count_what_was_recorded_under_concurrency(
    pg_trail: Jobtrail, caplog: pytest.LogCaptureFixture
) -> None:
    """Four threads, a progress report right before every outcome: each job's reports and
    outcome are written in the order made (the last report, held back by the throttle, is
    sent before the outcome), and the counts and log lines match the log."""
    registry = Registry()

    @registry.processor("chatty")
    def chatty(job: JobView, ctx: JobContext) -> dict[str, int]:
        ctx.progress(10, "started")
        ctx.progress(90, "almost")  # within the throttle's interval: held back, then sent
        if job.payload["n"] % 4 == 0:
            raise InsufficientCredits("none left")
        return {"n": job.payload["n"]}

    ids = pg_trail.submit_many([JobSpec("chatty", {"n": n}) for n in range(120)])
    settings = WorkerSettings(
        concurrency=4, until_empty=True, poll_seconds=0.005, progress_seconds=60
    )
    with caplog.at_level(logging.INFO, logger="jobtrail.worker"):
        stats = pg_trail.worker(settings, registry=registry).run()

    assert (stats.claimed, stats.completed, stats.failed, stats.absorbed) == (120, 90, 30, 0)
    assert len(stats.failure_latencies) == 30
    said = [record.getMessage() for record in caplog.records]
    assert sum(" completed after " in line for line in said) == 90
    assert sum(line.endswith(" marked failed") for line in said) == 30
    for n, job_id in enumerate(ids):
        events = pg_trail.history(job_id)
        check_history(job_id, events)
        terminal = "JobFailed" if n % 4 == 0 else "JobCompleted"
        assert [e.type for e in events] == [
            "JobQueued",
            "JobStarted",
            "JobProgressed",
            "JobProgressed",
            terminal,
        ]
        assert [e.data()["percent"] for e in events[2:4]] == [10, 90]
        assert pg_trail.get(job_id)["progress"] == (90 if n % 4 == 0 else 100)


def test_a_processor_may_return_the_payload_it_was_given(trail: Jobtrail) -> None:
    """PostgreSQL gives the floats 1e16 and 1e21 back as integers beyond 2^53; a processor
    that returns its payload as it read it must complete, not fail as invalid_result."""
    registry = Registry()

    @registry.processor("echo")
    def echo(job: JobView, ctx: JobContext) -> dict[str, object]:
        return dict(job.payload)

    job_id = trail.submit("echo", {"seed": 1e16, "big": 1e21, "neg": -0.0, "small": 1e-7})
    trail.worker(FAST, registry=registry).run()

    row = trail.get(job_id)
    assert row["status"] == "completed", row["error_message"]
    assert {k: float(v) for k, v in row["result"].items()} == {
        "seed": 1e16,
        "big": 1e21,
        "neg": 0.0,
        "small": 1e-7,
    }
