"""Replay of the Kafka topic agrees with replay of the database.

The log's events are published here with a plain producer and the topic's codec (the relay
will do this in production; this test is to be switched to the real relay), spread over
three partitions so that records of different jobs interleave.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from adapters.api import Jobtrail
from adapters.cli import main
from adapters.kafka_codec import encode
from tests.integration.test_replay import DIFF_KINDS, make_log, replay, tamper
from tests.kafka_broker import Broker, unique_name

pytestmark = pytest.mark.kafka


def publish(trail: Jobtrail, broker: Broker, topic: str, resend: int = 0) -> int:
    """Every event of the log, as stored, in position order; the first ``resend`` twice."""
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    events = trail.store.read_after(0, limit=100_000)
    for event in events + events[:resend]:
        message = encode(event)
        producer.send(topic, key=message.key, value=message.value, headers=message.headers)
    producer.flush()
    producer.close()
    return len(events)


def replay_topic(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    broker: Broker,
    topic: str,
) -> tuple[int, dict[str, Any]]:
    monkeypatch.setenv("JOBTRAIL_KAFKA_BOOTSTRAP", broker.bootstrap)
    monkeypatch.setenv("JOBTRAIL_KAFKA_TOPIC", topic)
    code = main(["--db", url, "replay", "--source", "kafka", "--idle", "1", "--json"])
    return code, json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("tampered", [False, True])
def test_the_topic_replays_like_the_database(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kafka_broker: Broker,
    trail: Jobtrail,
    backend_url: str,
    tampered: bool,
) -> None:
    ids = make_log(trail)
    if tampered:
        tamper(trail, "DELETE FROM job_events WHERE job_id = :j AND version = 2", j=ids["failed"])
    topic = unique_name("replay")
    published = publish(trail, kafka_broker, topic, resend=3)

    db_code, from_db = replay(capsys, backend_url)
    kafka_code, from_kafka = replay_topic(capsys, monkeypatch, backend_url, kafka_broker, topic)

    assert kafka_code == db_code == (1 if tampered else 0)
    assert from_kafka["events"] == from_db["events"] == published
    assert (from_kafka["jobs"], from_kafka["duplicates_skipped"]) == (from_db["jobs"], 3)
    assert not from_kafka["seals"]["checked"]
    assert "not published" in from_kafka["seals"]["reason"]
    assert [p for p in from_db["problems"] if p["kind"] not in DIFF_KINDS] == from_kafka["problems"]


def test_a_missing_topic_is_an_error(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kafka_broker: Broker,
    backend_url: str,
) -> None:
    monkeypatch.setenv("JOBTRAIL_KAFKA_BOOTSTRAP", kafka_broker.bootstrap)
    monkeypatch.setenv("JOBTRAIL_KAFKA_TOPIC", unique_name("missing"))
    assert main(["--db", backend_url, "replay", "--source", "kafka", "--idle", "0.5"]) == 1
    assert "jobtrail: error:" in capsys.readouterr().err
