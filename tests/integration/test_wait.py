"""Waiting for a job's result (issue 12, part 4): `Jobtrail.wait`, `submit --wait`, `wait`.

The CLI runs as a real process, with a worker running the sample processors in a thread of
the test. On PostgreSQL a waiter wakes on NOTIFY (the fallback re-read is set to 30 s where
the test proves it), through one shared LISTEN connection, with no wakeup lost before
LISTEN takes effect or while it reconnects.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.sql import waiting
from jobtrail.domain.errors import InvalidField, InvalidJobId, JobNotFound, WaitTimedOut
from jobtrail.processors.engine.worker import WorkerSettings

VIDEO = "shot_video_generation"
QUICK = json.dumps({"duration_ms": 10})
NO_CREDITS = json.dumps({"credits": 0})
SLOW_FALLBACK = 30.0
"""The fallback re-read in the tests that prove a NOTIFY woke the waiter."""


def jobtrail(url: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobtrail", "--db", url, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_jobtrail(url: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jobtrail", "--db", url, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def worker(trail: Jobtrail) -> Iterator[None]:
    """A worker running the sample processors in a thread for the whole test."""
    running = trail.worker(WorkerSettings(poll_seconds=0.01, progress_seconds=0))
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    yield
    running.stop()
    thread.join(timeout=30)
    assert not thread.is_alive()


def url_of(trail: Jobtrail) -> str:
    return trail.engine.url.render_as_string(hide_password=False)


# ------------------------------------------------------------------------ the CLI


def test_submit_wait_prints_the_id_then_the_result_and_exits_0(
    trail: Jobtrail, worker: None
) -> None:
    done = jobtrail(url_of(trail), "submit", VIDEO, "--payload", QUICK, "--wait", "--timeout", "30")
    assert (done.returncode, done.stderr) == (0, "")
    job_id, result, *more = done.stdout.splitlines()
    assert more == []
    assert json.loads(result) == trail.get(job_id)["result"]
    assert json.loads(result)["video_url"].endswith(job_id)


def test_a_failed_job_is_one_line_and_exit_1(trail: Jobtrail, worker: None) -> None:
    done = jobtrail(url_of(trail), "submit", VIDEO, "--payload", NO_CREDITS, "--wait")
    job_id = done.stdout.strip()
    assert done.returncode == 1
    assert done.stderr == (
        f"jobtrail: job {job_id} failed: insufficient_credits: "
        "insufficient credits: 0 left, 1 needed\n"
    )


def test_a_job_cancelled_while_waited_for_exits_3(trail: Jobtrail) -> None:
    waiter = start_jobtrail(url_of(trail), "submit", VIDEO, "--wait", "--timeout", "60")
    assert waiter.stdout is not None
    job_id = waiter.stdout.readline().strip()  # printed before the wait starts
    trail.cancel(job_id, "storyboard\ndeleted")
    out, err = waiter.communicate(timeout=60)
    assert (waiter.returncode, out) == (3, "")
    assert err == f"jobtrail: job {job_id} was cancelled: storyboard deleted\n"


def test_a_job_not_finished_in_time_exits_4_after_printing_its_id(trail: Jobtrail) -> None:
    started = time.monotonic()
    done = jobtrail(url_of(trail), "submit", VIDEO, "--wait", "--timeout", "0.5")
    job_id = done.stdout.strip()
    assert done.returncode == 4
    assert done.stderr == f"jobtrail: error: job {job_id} did not finish within 0.5 seconds\n"
    assert trail.get(job_id)["status"] == "queued"
    assert time.monotonic() - started >= 0.5


def test_wait_for_a_job_submitted_earlier(trail: Jobtrail, worker: None) -> None:
    first = trail.submit(VIDEO, {"duration_ms": 10})
    trail.wait(first, 30)
    done = jobtrail(url_of(trail), "wait", first)  # already completed: at once
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout) == trail.get(first)["result"]

    slow = trail.submit(VIDEO, {"duration_ms": 1500})
    done = jobtrail(url_of(trail), "wait", slow, "--timeout", "30")
    assert (done.returncode, done.stderr) == (0, "")
    assert trail.get(slow)["status"] == "completed"


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["wait", "not-a-job"], 1, "jobtrail: error: 'not-a-job' is not a job id"),
        (["wait", str(uuid.UUID(int=7))], 1, f"jobtrail: error: No job with id {uuid.UUID(int=7)}"),
        (["wait", str(uuid.UUID(int=7)), "--timeout", "-1"], 2, "jobtrail: error: argument"),
        (["wait", str(uuid.UUID(int=7)), "--timeout", "nan"], 2, "jobtrail: error: argument"),
        (["wait"], 2, "jobtrail: error: the following arguments are required: JOB_ID"),
        (["submit", VIDEO, "--wait", "--timeout", "0"], 2, "jobtrail: error: argument"),
    ],
)
def test_bad_input_is_one_line(trail: Jobtrail, args: list[str], code: int, message: str) -> None:
    started = time.monotonic()
    done = jobtrail(url_of(trail), *args)
    assert (done.returncode, done.stdout) == (code, "")
    assert done.stderr.startswith(message) and done.stderr.count("\n") == 1, done.stderr
    assert time.monotonic() - started < 30  # an unknown job is not waited for


# ------------------------------------------------------------------------ the API


def test_wait_returns_the_row_get_returns(trail: Jobtrail, worker: None) -> None:
    job_id = trail.submit(VIDEO, {"duration_ms": 10})
    row = trail.wait(job_id, 30)
    assert row["status"] == "completed" and row == trail.get(job_id)


def test_wait_times_out_with_wait_timed_out(trail: Jobtrail) -> None:
    job_id = trail.submit(VIDEO)
    started = time.monotonic()
    with pytest.raises(WaitTimedOut) as raised:
        trail.wait(job_id, 0.3)
    took = time.monotonic() - started
    assert 0.3 <= took < 10
    assert str(raised.value) == f"job {job_id} did not finish within 0.3 seconds"
    assert raised.value.context["status"] == "queued"


def test_wait_refuses_bad_input_at_once(trail: Jobtrail) -> None:
    job_id = trail.submit(VIDEO)
    with pytest.raises(InvalidJobId):
        trail.wait("42", 60)
    with pytest.raises(JobNotFound):
        trail.wait(str(uuid.uuid4()), 60)
    for timeout in (-1.0, 0.0, float("nan")):
        with pytest.raises(InvalidField):
            trail.wait(job_id, timeout)
    with pytest.raises(InvalidField):
        trail.wait(job_id, 1, fallback_seconds=0)


def test_many_concurrent_waiters_all_return(trail: Jobtrail) -> None:
    ids = [trail.submit(VIDEO, {"duration_ms": 10, "credits": n % 2}) for n in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        futures = [pool.submit(trail.wait, job_id, 60) for job_id in ids]
        time.sleep(0.3)  # every waiter is waiting before any job runs
        assert not any(f.done() for f in futures)
        running = trail.worker(WorkerSettings(poll_seconds=0.01, until_empty=True))
        running.run()
        rows = [f.result(timeout=60) for f in futures]
    assert [row["id"] for row in rows] == ids
    assert [row["status"] for row in rows] == ["failed", "completed"] * 10


# ------------------------------------------------------------------------ PostgreSQL


def listening_backends(trail: Jobtrail) -> int:
    url = trail.engine.url
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True
    ) as conn:
        found = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND query = %s",
            (url.database, f"LISTEN {waiting.CHANNEL}"),
        ).fetchone()
    assert found is not None
    return int(found[0])


def waiting_in_thread(trail: Jobtrail, job_id: str) -> tuple[threading.Thread, list[Any]]:
    """A thread waiting for ``job_id`` (fallback 30 s); its row or error lands in the list."""
    outcome: list[Any] = []

    def wait() -> None:
        try:
            outcome.append(trail.wait(job_id, 60, fallback_seconds=SLOW_FALLBACK))
        except Exception as error:
            outcome.append(error)

    thread = threading.Thread(target=wait)
    thread.start()
    return thread, outcome


def returns_within(thread: threading.Thread, seconds: float) -> float:
    started = time.monotonic()
    thread.join(timeout=SLOW_FALLBACK)
    took = time.monotonic() - started
    assert not thread.is_alive()
    assert took < seconds, f"woken after {took:.2f} s: by the fallback, not a notification"
    return took


@pytest.mark.postgres
def test_a_notification_wakes_the_waiter_not_the_fallback(pg_trail: Jobtrail) -> None:
    job_id = pg_trail.submit(VIDEO)
    thread, outcome = waiting_in_thread(pg_trail, job_id)
    listener = waiting.listener_for(pg_trail.engine)
    wait_for(lambda: listener.listening, 10, "LISTEN")
    time.sleep(0.2)  # the waiter is asleep, its fallback 30 s away

    pg_trail.cancel(job_id, "done waiting")
    returns_within(thread, 2.0)
    assert outcome[0]["status"] == "cancelled"


@pytest.mark.postgres
def test_twenty_waiters_share_one_listen_connection(pg_trail: Jobtrail) -> None:
    ids = [pg_trail.submit(VIDEO) for _ in range(20)]
    threads = [waiting_in_thread(pg_trail, job_id) for job_id in ids]
    listener = waiting.listener_for(pg_trail.engine)
    wait_for(lambda: listener.listening, 10, "LISTEN")
    assert listening_backends(pg_trail) == 1

    for job_id in ids:
        pg_trail.cancel(job_id)
    for thread, outcome in threads:
        returns_within(thread, 5.0)
        assert outcome[0]["status"] == "cancelled"


@pytest.mark.postgres
def test_a_job_finished_before_listen_took_effect_is_seen(
    pg_trail: Jobtrail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waiter reads the row, the job finishes, and only then does LISTEN start: the
    listener wakes every waiter once it listens, so the re-read finds the job final."""
    gate, first_read = threading.Event(), threading.Event()
    opened = waiting._connector(pg_trail.engine)

    def slow_connect() -> psycopg.Connection[Any]:
        gate.wait(30)
        return opened()

    monkeypatch.setitem(waiting._LISTENERS, pg_trail.engine, waiting.Listener(slow_connect, "slow"))
    read = pg_trail.queries.get

    def reading(job_id: str) -> dict[str, Any] | None:
        row = read(job_id)
        first_read.set()
        return row

    monkeypatch.setattr(pg_trail.queries, "get", reading)
    job_id = pg_trail.submit(VIDEO)
    thread, outcome = waiting_in_thread(pg_trail, job_id)
    assert first_read.wait(10)
    pg_trail.cancel(job_id)  # its notification goes to nobody
    time.sleep(0.2)
    gate.set()
    returns_within(thread, 3.0)
    assert outcome[0]["status"] == "cancelled"


@pytest.mark.postgres
def test_a_lost_listen_connection_is_reopened_and_nothing_is_missed(pg_trail: Jobtrail) -> None:
    job_id = pg_trail.submit(VIDEO)
    thread, outcome = waiting_in_thread(pg_trail, job_id)
    listener = waiting.listener_for(pg_trail.engine)
    wait_for(lambda: listener.listening, 10, "LISTEN")
    url = pg_trail.engine.url
    with psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True
    ) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND query = %s",
            (url.database, f"LISTEN {waiting.CHANNEL}"),
        )
    pg_trail.cancel(job_id)  # while the listener is down or reconnecting
    returns_within(thread, 5.0)
    assert outcome[0]["status"] == "cancelled"
    wait_for(lambda: listening_backends(pg_trail) == 1, 10, "the listener to reconnect")


@pytest.mark.postgres
def test_the_cli_listens_on_postgres(postgres_url: str) -> None:
    trail = connect(postgres_url)
    try:
        job_id = trail.submit(VIDEO)
        waiter = start_jobtrail(postgres_url, "wait", job_id, "--timeout", "60")
        wait_for(lambda: listening_backends(trail) == 1, 30, "the CLI to LISTEN")
        trail.cancel(job_id, "not needed")
        started = time.monotonic()
        out, err = waiter.communicate(timeout=60)
        assert (waiter.returncode, out) == (3, "")
        assert err == f"jobtrail: job {job_id} was cancelled: not needed\n"
        assert time.monotonic() - started < 5
    finally:
        trail.close()
