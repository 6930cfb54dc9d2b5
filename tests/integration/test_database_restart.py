"""The database restarts (cleanly and by a crash) under a running worker and relay.

The server is the test's own (tests/pg_server.py), so it can be stopped and started
under a worker process without touching the shared one. Afterwards every job has ended
exactly once, the log replays clean (chains, legal transitions, the `job` table equal to
the rebuilt one), and with `--relay` every event reached a consumer once, in order.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.domain.events import TERMINAL_EVENT_TYPES
from jobtrail.domain.services import JobSpec

from tests.conftest import REQUIRED, database_url, unavailable
from tests.helpers import check_history
from tests.integration.test_relay_kafka import assert_every_event_once_in_order, consume_all
from tests.kafka_broker import Broker
from tests.pg_server import OwnPostgres, ServerUnavailable

JOBS = [
    *[JobSpec("asset_image_generation", {"duration_ms": 20}, max_attempts=6)] * 120,
    *[JobSpec("shot_video_generation", {"duration_ms": 20, "credits": 0})] * 30,
    *[JobSpec("asset_image_generation", {"duration_ms": 20, "fail_times": 1}, max_attempts=6)] * 30,
]
EXPECTED = {"completed": 150, "failed": 30}


@pytest.fixture
def server() -> Iterator[OwnPostgres]:
    try:
        own = OwnPostgres()
    except ServerUnavailable as error:
        unavailable(f"cannot start a PostgreSQL server of the test's own: {error}", REQUIRED)
    try:
        own.start()
        yield own
    finally:
        own.remove()


@pytest.fixture
def own_trail(server: OwnPostgres) -> Iterator[Jobtrail]:
    trail = connect(database_url(server.url))
    trail.init_db()
    yield trail
    trail.close()


def terminal_count(trail: Jobtrail) -> int:
    by_status = trail.stats().by_status
    return sum(by_status[status] for status in EXPECTED)


def wait_for_terminal(trail: Jobtrail, count: int, worker: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while terminal_count(trail) < count:
        assert worker.poll() is None, "the worker exited before the restart"
        assert time.monotonic() < deadline, "the worker made no progress"
        time.sleep(0.05)


def start_worker(url: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    command = ["worker", "--until-empty", "--concurrency", "4", "--lease", "2", *args]
    return subprocess.Popen(
        [sys.executable, "-m", "jobtrail", *command],
        env={**os.environ, **(env or {}), "JOBTRAIL_DATABASE_URL": url, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def restart_twice_under(trail: Jobtrail, server: OwnPostgres, worker: subprocess.Popen[str]) -> str:
    """A crash (recovered from the WAL) and a clean restart, each with the server down for
    a second while the worker runs; returns what the worker printed."""
    wait_for_terminal(trail, 40, worker)
    server.stop("immediate")
    time.sleep(1.0)
    server.start()
    wait_for_terminal(trail, terminal_count(trail) + 40, worker)
    server.stop("fast")
    time.sleep(1.0)
    server.start()
    output, _ = worker.communicate(timeout=180)
    assert worker.returncode == 0, output
    return output


def assert_every_job_ended_once(trail: Jobtrail) -> None:
    assert dict(trail.stats().by_status) == EXPECTED
    for job in trail.jobs(limit=len(JOBS)):
        history = trail.history(job["id"])
        check_history(job["id"], history)
        assert sum(e.type in TERMINAL_EVENT_TYPES for e in history) == 1


def replay_exit_code(url: str) -> int:
    done = subprocess.run(
        [sys.executable, "-m", "jobtrail", "--db", url, "replay"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode


def test_a_worker_rides_out_a_crash_and_a_restart_of_the_database(
    own_trail: Jobtrail, server: OwnPostgres
) -> None:
    url = database_url(server.url)
    own_trail.submit_many(JOBS)
    worker = start_worker(url)
    output = restart_twice_under(own_trail, server, worker)

    assert "Cannot reach the database" in output, output
    assert_every_job_ended_once(own_trail)
    assert replay_exit_code(url) == 0


@pytest.mark.kafka
def test_a_worker_with_relay_loses_and_repeats_no_event_across_database_restarts(
    own_trail: Jobtrail, server: OwnPostgres, kafka_broker: Broker
) -> None:
    url, topic = database_url(server.url), f"db-restart-{os.getpid()}-{time.monotonic_ns()}"
    own_trail.submit_many(JOBS)
    kafka = {"JOBTRAIL_KAFKA_BOOTSTRAP": kafka_broker.bootstrap, "JOBTRAIL_KAFKA_TOPIC": topic}
    worker = start_worker(url, "--relay", "--batch", "50", env=kafka)
    restart_twice_under(own_trail, server, worker)

    assert_every_job_ended_once(own_trail)
    consumed = consume_all(kafka_broker.bootstrap, topic)
    assert_every_event_once_in_order(own_trail, consumed)
    assert replay_exit_code(url) == 0
