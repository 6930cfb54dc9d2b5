"""Submit → worker → relay → JobEventConsumer, on PostgreSQL and a Kafka-protocol broker.

What the consumer's handler receives must be the whole log, each job's versions once and
in order, across a relay killed with SIGKILL, a broker that stops answering for 10 s, and
two relays started at once.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.kafka.codec import RawEvent
from jobtrail.adapters.kafka.consumer import ConsumerStats, JobEventConsumer
from jobtrail.adapters.kafka.publisher import KafkaPublisher, KafkaSettings
from jobtrail.adapters.kafka.relay import Relay, RelaySettings, run_in_thread
from jobtrail.adapters.kafka.relay_position import SqlRelayPosition
from jobtrail.adapters.kafka.relay_source import SqlRecordSource
from jobtrail.domain.events import Event
from jobtrail.domain.ports import SystemClock
from jobtrail.domain.services import JobSpec
from jobtrail.processors.engine.worker import WorkerSettings
from sqlalchemy import Connection

from tests.integration.test_worker import wait_for
from tests.kafka_broker import Broker, start_tansu, unique_name

pytestmark = [pytest.mark.kafka, pytest.mark.postgres]

MIXED = [
    JobSpec("asset_image_generation", {"duration_ms": 0}),
    JobSpec("shot_video_generation", {"duration_ms": 0, "credits": 0}),
    JobSpec("asset_image_generation", {"duration_ms": 0, "fail_times": 1}),
    JobSpec("no_such_type"),
]
FAST = WorkerSettings(until_empty=True, poll_seconds=0.01, concurrency=4)


@dataclass
class Consumed:
    """What a `JobEventConsumer` handed to its handler, and what it dropped."""

    events: list[Event]
    stats: ConsumerStats


def consume_all(bootstrap: str, topic: str, idle: float = 1.5) -> Consumed:
    """Every event on the topic as a consumer in another service receives it."""
    handled: list[Event] = []

    def handler(event: Event | RawEvent) -> None:
        assert isinstance(event, Event), f"not typed: {event}"
        handled.append(event)

    with JobEventConsumer(handler, bootstrap=bootstrap, topic=topic, from_beginning=True) as c:
        stats = c.run(until_idle=idle)
    return Consumed(handled, stats)


def assert_every_event_once_in_order(trail: Jobtrail, consumed: Consumed) -> None:
    """The handler saw the whole log: each job's versions 1..n once, in order, no gap."""
    versions: dict[str, list[int]] = {}
    for event in consumed.events:
        versions.setdefault(event.job_id, []).append(event.version)
    log = list(trail.store.read_all())
    expected: dict[str, list[int]] = {}
    for event in log:
        expected.setdefault(event.job_id, []).append(event.version)
    assert versions == expected
    assert {e.event_id: e.hash for e in consumed.events} == {e.event_id: e.hash for e in log}
    assert consumed.stats.gaps == 0


def last_position(trail: Jobtrail) -> int:
    log = trail.store.read_after(0, limit=1_000_000)
    return log[-1].position or 0 if log else 0


def start_cli_relay(
    env: dict[str, str], bootstrap: str, topic: str, *args: str
) -> subprocess.Popen[str]:
    command = ["relay", "--kafka", bootstrap, "--topic", topic, "--relay-lease", "1", *args]
    return subprocess.Popen(
        [sys.executable, "-m", "jobtrail", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def cli_env(postgres_url: str) -> dict[str, str]:
    return {**os.environ, "JOBTRAIL_DATABASE_URL": postgres_url, "PYTHONUNBUFFERED": "1"}


def test_a_relay_killed_mid_stream_and_restarted_loses_nothing(
    pg_trail: Jobtrail, kafka_broker: Broker, cli_env: dict[str, str]
) -> None:
    topic = unique_name("relay-kill")
    pg_trail.submit_many(MIXED * 50)
    pg_trail.worker(FAST).run()
    pg_trail.submit_many(MIXED * 50)
    relay = start_cli_relay(cli_env, kafka_broker.bootstrap, topic, "--batch", "10")
    positions = pg_trail.relay(KafkaSettings(kafka_broker.bootstrap, topic)).positions
    try:
        worker = threading.Thread(target=lambda: pg_trail.worker(FAST).run())
        worker.start()
        wait_for(lambda: positions.holder()[1] > 0, 30, "the relay to publish something")
    finally:
        relay.send_signal(signal.SIGKILL)
        relay.wait()
    worker.join()
    killed_at = positions.holder()[1]
    assert 0 < killed_at < last_position(pg_trail), "the kill should land mid-stream"

    restarted = start_cli_relay(cli_env, kafka_broker.bootstrap, topic, "--until-caught-up")
    output, _ = restarted.communicate(timeout=60)
    assert restarted.returncode == 0, output
    assert positions.holder()[1] == last_position(pg_trail)
    consumed = consume_all(kafka_broker.bootstrap, topic)
    assert_every_event_once_in_order(pg_trail, consumed)


@pytest.fixture
def own_broker() -> Iterator[Broker]:
    """A broker this test may pause: never the shared one."""
    if os.environ.get("JOBTRAIL_TEST_KAFKA_BOOTSTRAP"):
        pytest.skip("pausing needs a broker started by the tests, not an external one")
    broker = start_tansu()
    yield broker
    broker.stop()


def test_a_broker_that_stops_answering_for_ten_seconds_loses_nothing(
    pg_trail: Jobtrail, own_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    topic = unique_name("relay-pause")
    kafka = KafkaSettings(own_broker.bootstrap, topic, timeout=2.0)
    relay = pg_trail.relay(kafka, RelaySettings(poll=0.05, max_backoff=1.0))
    relay_thread = run_in_thread(relay)
    try:
        pg_trail.submit_many(MIXED * 10)
        pg_trail.worker(FAST).run()
        wait_for(lambda: relay.position == last_position(pg_trail), 30, "the first events")
        with (
            caplog.at_level(logging.WARNING, logger="jobtrail.adapters.kafka.relay"),
            own_broker.paused(),
        ):
            for _ in range(5):  # jobs keep running while the broker is away
                pg_trail.submit_many(MIXED * 5)
                pg_trail.worker(FAST).run()
                threading.Event().wait(2)
        wait_for(lambda: relay.position == last_position(pg_trail), 60, "the relay to resume")
    finally:
        relay.stop()
        relay_thread.join()
    assert f"The Kafka broker at {own_broker.bootstrap} is unreachable" in caplog.text
    senders = [t for t in threading.enumerate() if t.name == "jobtrail-relay-network-thread"]
    assert senders == [], "producers thrown away after the outage left threads behind"
    consumed = consume_all(own_broker.bootstrap, topic)
    assert_every_event_once_in_order(pg_trail, consumed)
    logging.getLogger(__name__).info("%d duplicates dropped", consumed.stats.duplicates)


def test_of_two_relays_one_publishes_and_the_other_takes_over_when_it_dies(
    pg_trail: Jobtrail, kafka_broker: Broker, cli_env: dict[str, str]
) -> None:
    topic = unique_name("relay-two")
    positions = pg_trail.relay(KafkaSettings(kafka_broker.bootstrap, topic)).positions
    first = start_cli_relay(cli_env, kafka_broker.bootstrap, topic)
    wait_for(lambda: positions.holder()[0] is not None, 30, "the first relay to take the lease")
    second = start_cli_relay(cli_env, kafka_broker.bootstrap, topic)
    try:
        pg_trail.submit_many(MIXED * 20)
        pg_trail.worker(FAST).run()
        wait_for(lambda: positions.holder()[1] == last_position(pg_trail), 30, "the first relay")
        owner = positions.holder()[0]
        assert owner is not None and f":{first.pid}:" in owner
        first.send_signal(signal.SIGKILL)
        first.wait()
        stopped_at = positions.holder()[1]
        pg_trail.submit_many(MIXED * 20)
        pg_trail.worker(FAST).run()
        wait_for(lambda: positions.holder()[1] == last_position(pg_trail), 30, "the takeover")
        owner = positions.holder()[0]
        assert owner is not None and f":{second.pid}:" in owner
    finally:
        for relay in (first, second):
            relay.send_signal(signal.SIGTERM)
        output, _ = second.communicate(timeout=30)
    assert f"publishing from position {stopped_at}" in output
    assert output.count("publishing from position") == 1, output
    consumed = consume_all(kafka_broker.bootstrap, topic)
    assert_every_event_once_in_order(pg_trail, consumed)


def test_a_worker_with_relay_publishes_everything_it_did_before_it_exits(
    pg_trail: Jobtrail, kafka_broker: Broker, cli_env: dict[str, str]
) -> None:
    topic = unique_name("worker-relay")
    pg_trail.submit_many(MIXED * 5)
    worker = subprocess.run(
        [sys.executable, "-m", "jobtrail", "worker", "--until-empty", "--relay"],
        env={
            **cli_env,
            "JOBTRAIL_KAFKA_BOOTSTRAP": kafka_broker.bootstrap,
            "JOBTRAIL_KAFKA_TOPIC": topic,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == 0, worker.stderr
    consumed = consume_all(kafka_broker.bootstrap, topic)
    assert_every_event_once_in_order(pg_trail, consumed)
    assert consumed.stats.duplicates == 0  # a clean run sends each event once


class DyingConnections(SqlRecordSource):
    """Reads whose database connection is terminated by the server, as in a restart, on the
    calls numbered in `dying`: the relay sees exactly what a restarted database gives it."""

    def __init__(self, trail: Jobtrail, dying: set[int]) -> None:
        super().__init__(trail.engine)
        self.calls = 0
        self.dying = dying

    def _rows(self, conn: Connection, params: dict[str, int]) -> Sequence[Sequence[Any]]:
        self.calls += 1
        if self.calls in self.dying:
            conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")
        return super()._rows(conn, params)


def test_a_relay_whose_database_connections_die_resends_and_loses_nothing(
    pg_trail: Jobtrail, kafka_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    topic = unique_name("relay-db-restart")
    pg_trail.submit_many(MIXED * 40)
    pg_trail.worker(FAST).run()
    kafka = KafkaSettings(kafka_broker.bootstrap, topic)
    source = DyingConnections(pg_trail, dying={3, 4, 9})
    relay = Relay(
        source,
        SqlRelayPosition(pg_trail.engine, name=topic),
        KafkaPublisher(kafka),
        SystemClock(),
        RelaySettings(batch=20, max_backoff=0.2),
    )
    with caplog.at_level(logging.WARNING, logger="jobtrail.adapters.kafka.relay"):
        relay.run(until_caught_up=True)
    assert source.calls > 9 and relay.positions.holder()[1] == last_position(pg_trail)
    assert caplog.text.count("Cannot reach the database") == 3  # logged, backed off, resumed
    assert_every_event_once_in_order(pg_trail, consume_all(kafka_broker.bootstrap, topic))
