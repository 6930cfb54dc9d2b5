"""The relay against a real Kafka-protocol broker and PostgreSQL: nothing lost, ever.

Consumers drop duplicates by (job_id, version); these tests check that what reaches the
topic is the whole log, in version order per job, across relay crashes, a broker that
stops answering, and two relays started at once.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, TopicPartition

from adapters.api import Jobtrail
from adapters.kafka_codec import RawEvent, decode
from adapters.kafka_publisher import KafkaSettings
from adapters.relay import RelaySettings, run_in_thread
from domain.events import Event
from domain.services import JobSpec
from processors.worker import WorkerSettings
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


def read_topic(bootstrap: str, topic: str, idle: float = 1.5) -> list[Event]:
    """Every record on the topic, decoded, partition by partition in offset order."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        consumer.seek_to_beginning()
        events: list[Event] = []
        while batch := consumer.poll(timeout_ms=int(idle * 1000)):
            for records in batch.values():
                for record in records:
                    decoded = decode(record.value)
                    assert not isinstance(decoded, RawEvent)
                    events.append(decoded)
        return events
    finally:
        consumer.close()


def assert_whole_log_in_order(trail: Jobtrail, published: list[Event]) -> int:
    """Every logged event reached the topic, each job's in version order; returns duplicates."""
    seen: dict[str, int] = {}
    duplicates = 0
    for event in published:
        last = seen.get(event.job_id, 0)
        if event.version <= last:
            duplicates += 1  # a re-send after a crash or an outage: consumers drop it
            continue
        assert event.version == last + 1, f"job {event.job_id} jumped {last} → {event.version}"
        seen[event.job_id] = event.version
    log = list(trail.store.read_all())
    assert {(e.job_id, e.version) for e in published} == {(e.job_id, e.version) for e in log}
    assert {e.event_id: e.hash for e in published} == {e.event_id: e.hash for e in log}
    return duplicates


def last_position(trail: Jobtrail) -> int:
    log = trail.store.read_after(0, limit=1_000_000)
    return log[-1].position or 0 if log else 0


def start_cli_relay(
    env: dict[str, str], bootstrap: str, topic: str, *args: str
) -> subprocess.Popen[str]:
    command = ["relay", "--kafka", bootstrap, "--topic", topic, "--relay-lease", "1", *args]
    return subprocess.Popen(
        [sys.executable, "-m", "adapters.cli", *command],
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
    assert_whole_log_in_order(pg_trail, read_topic(kafka_broker.bootstrap, topic))


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
        with caplog.at_level(logging.WARNING, logger="adapters.relay"), own_broker.paused():
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
    duplicates = assert_whole_log_in_order(pg_trail, read_topic(own_broker.bootstrap, topic))
    logging.getLogger(__name__).info("%d duplicates after the outage", duplicates)


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
    assert_whole_log_in_order(pg_trail, read_topic(kafka_broker.bootstrap, topic))


def test_a_worker_with_relay_publishes_everything_it_did_before_it_exits(
    pg_trail: Jobtrail, kafka_broker: Broker, cli_env: dict[str, str]
) -> None:
    topic = unique_name("worker-relay")
    pg_trail.submit_many(MIXED * 5)
    worker = subprocess.run(
        [sys.executable, "-m", "adapters.cli", "worker", "--until-empty", "--relay"],
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
    published = read_topic(kafka_broker.bootstrap, topic)
    assert assert_whole_log_in_order(pg_trail, published) == 0
    assert len(published) == len(list(pg_trail.store.read_all()))
