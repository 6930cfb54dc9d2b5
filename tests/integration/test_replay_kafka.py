"""Replay of the Kafka topic agrees with replay of the database.

The relay publishes the log to a topic of three partitions, so that records of different
jobs interleave, and re-sends a few events as it would after a crash.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.cli.main import main
from jobtrail.adapters.kafka.publisher import KafkaSettings
from jobtrail.adapters.sql.schema import relay_position
from sqlalchemy import update

from tests.integration.test_replay import (
    DIFF_KINDS,
    make_edge_log,
    make_log,
    replay,
    tamper,
)
from tests.kafka_broker import Broker, unique_name

pytestmark = pytest.mark.kafka


def publish(trail: Jobtrail, broker: Broker, topic: str, resend: int = 0) -> int:
    """Run the relay over the whole log; then, as if its last save had been lost in a crash,
    wind its stored position back by ``resend`` and run it again (those events go twice)."""
    kafka = KafkaSettings(broker.bootstrap, topic, partitions=3)
    trail.relay(kafka).run(until_caught_up=True)
    events = trail.store.read_after(0, limit=100_000)
    with trail.engine.begin() as conn:
        conn.execute(
            update(relay_position)
            .where(relay_position.c.name == topic)
            .values(position=relay_position.c.position - resend)
        )
    trail.relay(kafka).run(until_caught_up=True)
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


def test_edge_payloads_replay_clean_from_the_topic(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    kafka_broker: Broker,
    trail: Jobtrail,
    backend_url: str,
) -> None:
    """Published by the real relay from the envelope the database builds (jsonb's text on
    PostgreSQL): every hash re-verifies from the records."""
    make_log(trail)
    make_edge_log(trail)
    topic = unique_name("edge")
    published = publish(trail, kafka_broker, topic)
    code, report = replay_topic(capsys, monkeypatch, backend_url, kafka_broker, topic)
    assert (code, report["problems"]) == (0, [])
    assert report["events"] == report["hashes"]["jcs"] == published == 15


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
