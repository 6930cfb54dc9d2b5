"""Idle workers and the relay woken by PostgreSQL's NOTIFY (migration 0010), not by polling.

The workers here never poll (``push_only``) and reap once an hour, so nothing but a
notification, a due time or a (re)LISTEN can start a job: a broken wakeup leaves the job
queued and the test fails. The relay polls every 10 minutes. The fallback poll has a test
of its own, with the listener unable to reconnect.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.kafka.publisher import KafkaSettings
from jobtrail.adapters.kafka.relay import Relay, RelaySettings, run_in_thread
from jobtrail.adapters.sql import waiting
from jobtrail.adapters.sql.wakeup import EVENTS_APPENDED, JOB_AVAILABLE, job_wakeup
from jobtrail.domain.errors import UpstreamTimeout
from jobtrail.domain.events import JobRetryScheduled, JobStarted
from jobtrail.domain.retry import RetryPolicy
from jobtrail.domain.services import JobSpec
from jobtrail.processors.base import JobContext, JobView
from jobtrail.processors.engine.worker import Worker, WorkerSettings
from jobtrail.processors.registry import Registry

from tests.integration.test_relay import FlakyPublisher
from tests.integration.test_relay_kafka import last_position
from tests.integration.test_worker import wait_for
from tests.kafka_broker import Broker, unique_name

pytestmark = pytest.mark.postgres

IMAGE = "asset_image_generation"
QUICK = {"duration_ms": 0}
PUSH_ONLY = WorkerSettings(push_only=True, reap_seconds=3600, progress_seconds=0)
"""Never polls, reaps once an hour: only a wakeup or a due time starts a job."""
PROMPT = 5.0
"""Seconds a pushed start may take (a broken push never starts the job at all)."""
NOT_POLLING = RelaySettings(poll=600, lease=3600)


@contextlib.contextmanager
def running(worker: Worker) -> Iterator[Worker]:
    """The worker in a thread, idle and listening when the body starts."""
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(timeout=30)
        assert not thread.is_alive()


def listening(trail: Jobtrail, channel: str = JOB_AVAILABLE) -> waiting.Listener:
    """The listener of ``channel``, once LISTEN is in effect and its worker went to sleep."""
    listener = waiting.listener_for(trail.engine, channel)
    wait_for(lambda: listener.listening, 10, f"LISTEN {channel}")
    time.sleep(0.3)  # the worker's first claim found nothing: it sleeps
    return listener


def started_at(trail: Jobtrail, job_id: str) -> datetime:
    wait_for(lambda: trail.get(job_id)["started_at"] is not None, PROMPT * 3, "the job to start")
    started: datetime = trail.get(job_id)["started_at"]
    return started


def admin(trail: Jobtrail) -> psycopg.Connection[Any]:
    url = trail.engine.url
    return psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True
    )


def kill_listener(trail: Jobtrail, channel: str) -> int:
    """pg_terminate_backend on the connection listening on ``channel``; how many died."""
    with admin(trail) as conn:
        killed = conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND query = %s",
            (trail.engine.url.database, f"LISTEN {channel}"),
        ).fetchone()
    assert killed is not None
    return int(killed[0])


def gate_reconnections(
    listener: waiting.Listener, monkeypatch: pytest.MonkeyPatch
) -> threading.Event:
    """From now on the listener's connections open only once the returned event is set."""
    gate = threading.Event()
    opened = listener._connect

    def gated() -> psycopg.Connection[Any]:
        gate.wait(60)
        return opened()

    monkeypatch.setattr(listener, "_connect", gated)
    return gate


# ------------------------------------------------------------------------ workers


def test_an_idle_worker_starts_a_submitted_job_at_once(pg_trail: Jobtrail) -> None:
    with running(pg_trail.worker(PUSH_ONLY)):
        listening(pg_trail)
        submitted = datetime.now(UTC)
        job_id = pg_trail.submit(IMAGE, QUICK)
        latency = (started_at(pg_trail, job_id) - submitted).total_seconds()
        assert latency < PROMPT, f"started {latency:.2f} s after its submit"
        wait_for(lambda: pg_trail.get(job_id)["status"] == "completed", 30, "the job to complete")


def test_a_delayed_job_starts_on_time_not_before(pg_trail: Jobtrail) -> None:
    with running(pg_trail.worker(PUSH_ONLY)):
        listening(pg_trail)
        job_id = pg_trail.submit(IMAGE, QUICK, delay=2.0)
        due: datetime = pg_trail.get(job_id)["available_at"]
        started = started_at(pg_trail, job_id)
    late = (started - due).total_seconds()
    assert 0 <= late < PROMPT, f"started {late:.2f} s after its due time"


def test_a_retry_scheduled_by_another_worker_starts_on_time(postgres_url: str) -> None:
    """Worker A fails the first attempt and stops; idle worker B, asleep with nothing due
    when the retry was scheduled, learns of it from the notification alone."""
    trail = connect(postgres_url, policy=RetryPolicy(base_delay=2.0, factor=1.0))
    release = threading.Event()
    registry = Registry()

    @registry.processor("flaky")
    def flaky(job: JobView, ctx: JobContext) -> dict[str, int]:
        if job.attempt == 1:
            release.wait(30)
            raise UpstreamTimeout("the first attempt times out")
        return {"attempt": job.attempt}

    try:
        job_id = trail.submit("flaky", max_attempts=2)
        # A polls: the only listener is B's, so LISTEN in effect means B is listening.
        first = trail.worker(WorkerSettings(max_jobs=1, poll_seconds=0.01), registry, wakeup=None)
        first_thread = threading.Thread(target=first.run, daemon=True)
        first_thread.start()
        wait_for(lambda: trail.get(job_id)["status"] == "processing", 10, "A to claim the job")
        with running(trail.worker(PUSH_ONLY, registry)):
            listening(trail)
            release.set()
            first_thread.join(timeout=30)
            wait_for(lambda: trail.get(job_id)["attempt"] == 2, PROMPT * 3, "the second attempt")
        history = trail.history(job_id)
    finally:
        release.set()
        trail.close()
    (retry,) = [e for e in history if isinstance(e, JobRetryScheduled)]
    second = [e for e in history if isinstance(e, JobStarted) and e.attempt == 2][0]
    assert second.worker_id != first.worker_id
    late = (second.occurred_at - retry.available_at).total_seconds()
    assert 0 <= late < PROMPT, f"the retry started {late:.2f} s after its due time"


def test_resuming_a_paused_queue_wakes_an_idle_worker(pg_trail: Jobtrail) -> None:
    job_id = pg_trail.submit(IMAGE, QUICK, queue="renders")
    pg_trail.flow().pause("renders", reason="maintenance")
    with running(pg_trail.worker(PUSH_ONLY)):
        listening(pg_trail)
        assert pg_trail.get(job_id)["status"] == "queued"
        resumed = datetime.now(UTC)
        pg_trail.flow().resume("renders")
        latency = (started_at(pg_trail, job_id) - resumed).total_seconds()
    assert latency < PROMPT


def test_a_worker_is_woken_by_the_jobs_of_its_own_queues_only(pg_trail: Jobtrail) -> None:
    wakes: list[float] = []
    watch = job_wakeup(pg_trail.engine, {"renders"})
    assert watch is not None
    with watch(lambda: wakes.append(time.monotonic())):
        listening(pg_trail)
        assert len(wakes) == 1  # LISTEN took effect: everyone is woken once
        pg_trail.submit(IMAGE, QUICK, queue="thumbnails")
        time.sleep(1.0)
        assert len(wakes) == 1, "woken by a job of a queue it does not serve"
        pg_trail.submit(IMAGE, QUICK, queue="renders")
        wait_for(lambda: len(wakes) == 2, PROMPT, "the wakeup for its queue")


def test_a_batch_of_a_thousand_jobs_is_one_notification_per_channel(pg_trail: Jobtrail) -> None:
    with admin(pg_trail) as conn:
        conn.execute(f"LISTEN {JOB_AVAILABLE}")
        conn.execute(f"LISTEN {EVENTS_APPENDED}")
        pg_trail.submit_many([JobSpec(IMAGE, {"n": n}) for n in range(1000)])
        pg_trail.submit_many([JobSpec(IMAGE, queue=q) for q in ("a", "b", "a")])
        heard = [(n.channel, n.payload) for n in conn.notifies(timeout=1.0)]
    assert sorted(heard) == sorted(
        [
            (JOB_AVAILABLE, "default"),
            (EVENTS_APPENDED, ""),
            (JOB_AVAILABLE, "a"),
            (JOB_AVAILABLE, "b"),
            (EVENTS_APPENDED, ""),
        ]
    )


# ------------------------------------------------------------------------ nothing lost


def test_a_job_queued_while_the_listener_is_down_starts_once_it_is_back(
    pg_trail: Jobtrail, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its NOTIFY went to nobody; the (re)LISTEN wakes the worker, whose claim finds it."""
    with running(pg_trail.worker(PUSH_ONLY)):
        listener = listening(pg_trail)
        gate = gate_reconnections(listener, monkeypatch)
        assert kill_listener(pg_trail, JOB_AVAILABLE) == 1
        wait_for(lambda: not listener.listening, 10, "the listener to notice")
        job_id = pg_trail.submit(IMAGE, QUICK)
        time.sleep(0.5)
        assert pg_trail.get(job_id)["status"] == "queued"  # nothing polls
        reconnected = datetime.now(UTC)
        gate.set()
        latency = (started_at(pg_trail, job_id) - reconnected).total_seconds()
    assert latency < PROMPT


def test_without_a_listener_the_fallback_poll_still_finds_the_job(
    pg_trail: Jobtrail, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = WorkerSettings(reap_seconds=3600, progress_seconds=0)  # the default 1 s poll
    with running(pg_trail.worker(settings)):
        listener = listening(pg_trail)
        gate = gate_reconnections(listener, monkeypatch)
        try:
            assert kill_listener(pg_trail, JOB_AVAILABLE) == 1
            wait_for(lambda: not listener.listening, 10, "the listener to notice")
            submitted = datetime.now(UTC)
            job_id = pg_trail.submit(IMAGE, QUICK)
            latency = (started_at(pg_trail, job_id) - submitted).total_seconds()
            assert not listener.listening  # it was the poll, not a reconnection
        finally:
            gate.set()
    assert latency < PROMPT


# ------------------------------------------------------------------------ the relay


def relay_publishes_an_appended_event(trail: Jobtrail, relay: Relay) -> float:
    """Seconds from a submit to the relay's acknowledged position covering its event."""
    thread = run_in_thread(relay)
    try:
        wait_for(lambda: relay.caught_up, 10, "the relay to catch up")
        listening(trail, EVENTS_APPENDED)
        started = time.monotonic()
        trail.submit(IMAGE, QUICK)
        wait_for(lambda: relay.position == last_position(trail), PROMPT * 3, "the event")
        return time.monotonic() - started
    finally:
        relay.stop()
        thread.join(timeout=30)
        assert not thread.is_alive()


def test_the_relay_is_woken_by_appended_events(pg_trail: Jobtrail) -> None:
    relay = pg_trail.relay(KafkaSettings("127.0.0.1:9", "unused"), NOT_POLLING)
    publisher = relay.publisher = FlakyPublisher()
    assert relay_publishes_an_appended_event(pg_trail, relay) < PROMPT
    assert [e.type for e in publisher.sent] == ["JobQueued"]


@pytest.mark.kafka
def test_the_relay_publishes_to_kafka_when_woken(pg_trail: Jobtrail, kafka_broker: Broker) -> None:
    kafka = KafkaSettings(kafka_broker.bootstrap, unique_name("wakeup"), partitions=1)
    relay = pg_trail.relay(kafka, NOT_POLLING)
    pg_trail.submit(IMAGE, QUICK)  # the topic exists before the timed event
    assert relay_publishes_an_appended_event(pg_trail, relay) < PROMPT
