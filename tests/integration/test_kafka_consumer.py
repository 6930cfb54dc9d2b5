"""`JobEventConsumer` and `jobtrail consume` against the test broker.

The events come from a real run (jobs submitted and run by a worker on SQLite) and are
published the way the relay publishes them (`kafka_codec.encode`, key = job id), with a plain
producer: this branch tests the consumer side on its own.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from jobtrail.adapters.bootstrap import connect
from jobtrail.adapters.cli import main as cli
from jobtrail.adapters.kafka.codec import RawEvent, encode
from jobtrail.adapters.kafka.consumer import (
    DEAD_LETTER_SUFFIX,
    ChainBreak,
    Gap,
    JobEventConsumer,
)
from jobtrail.adapters.kafka.errors import BrokerUnavailable, EventHandlerFailed
from jobtrail.domain.events import Event
from jobtrail.domain.job import Meta
from jobtrail.domain.retry import RetryPolicy
from jobtrail.processors.engine.worker import WorkerSettings
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from tests.kafka_broker import Broker, unique_name

GARBAGE = b"\x00 definitely not an envelope"

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> list[Event]:
    """Every event of a small real run, in log order: all seven types."""
    path: Path = tmp_path_factory.mktemp("consumer") / "jobtrail.db"
    trail = connect(f"sqlite:///{path}", policy=RetryPolicy(base_delay=0.02, max_delay=0.05))
    trail.init_db()
    for payload in ({}, {"credits": 0}, {"fail_times": 1}, {"duration_ms": 150}):
        trail.submit("shot_video_generation", payload)
    trail.submit("no_such_type")
    cancelled = trail.submit("asset_image_generation", delay=3600)
    trail.cancel(cancelled, "storyboard deleted", Meta(actor="user:42"))
    settings = WorkerSettings(until_empty=True, poll_seconds=0.01, progress_seconds=0.01)
    trail.worker(settings).run()
    log = trail.store.read_after(0)
    trail.close()
    assert {e.type for e in log} == {
        "JobQueued",
        "JobStarted",
        "JobProgressed",
        "JobCompleted",
        "JobRetryScheduled",
        "JobFailed",
        "JobCancelled",
    }
    return log


# ------------------------------------------------------------------ helpers


def new_topic(broker: Broker, partitions: int = 3) -> str:
    topic = unique_name("consumer-test")
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        admin.close()
    return topic


def as_records(events: Sequence[Event]) -> list[Record]:
    return [(r.key, r.value, r.headers) for r in map(encode, events)]


def publish(broker: Broker, topic: str, records: Sequence[Record]) -> None:
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    try:
        for key, value, headers in records:
            producer.send(topic, key=key, value=value, headers=headers)
        producer.flush(timeout=30)
    finally:
        producer.close()


def read_raw(broker: Broker, topic: str, idle_ms: int = 1000) -> list[Any]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=idle_ms,
    )
    try:
        return list(consumer)
    finally:
        consumer.close()


class Collector:
    """A handler that records what it was given (and may fail on one event)."""

    def __init__(self, fail_on: tuple[str, int] | None = None, stop_after: int = 0) -> None:
        self.seen: list[Event | RawEvent] = []
        self.fail_on = fail_on
        self.stop_after = stop_after
        self.done = threading.Event()  # set once `stop_after` events were handled

    def __call__(self, event: Event | RawEvent) -> None:
        if (event.job_id, event.version) == self.fail_on:
            raise RuntimeError("the billing service is down")
        self.seen.append(event)
        if self.stop_after and len(self.seen) >= self.stop_after:
            self.done.set()

    def keys(self) -> list[tuple[str, int]]:
        return [(e.job_id, e.version) for e in self.seen]


def by_job(seen: Sequence[Event | RawEvent]) -> dict[str, list[int]]:
    versions: dict[str, list[int]] = defaultdict(list)
    for event in seen:
        versions[event.job_id].append(event.version)
    return versions


@pytest.fixture
def consumers(broker: Broker) -> Iterator[list[JobEventConsumer]]:
    """Consumers the test opens; closed at the end even when the test fails."""
    opened: list[JobEventConsumer] = []
    yield opened
    for consumer in opened:
        consumer.close()


@pytest.fixture
def broker(kafka_broker: Broker) -> Broker:
    return kafka_broker


def open_consumer(
    opened: list[JobEventConsumer], broker: Broker, topic: str, handler: Any, **kwargs: Any
) -> JobEventConsumer:
    if kwargs.get("group"):
        kwargs.setdefault("settings", broker.group_settings)
    consumer = JobEventConsumer(
        handler, bootstrap=broker.bootstrap, topic=topic, from_beginning=True, **kwargs
    )
    opened.append(consumer)
    return consumer


# -------------------------------------------------------------------- tests


@pytest.mark.kafka
def test_every_event_once_in_job_order_duplicates_dropped_garbage_dead_lettered(
    broker: Broker, consumers: list[JobEventConsumer], events: list[Event]
) -> None:
    topic = new_topic(broker)
    half = len(events) // 2
    resent = events[half:]  # a relay that crashed before storing its position sends again
    late_job = resent[-1].job_id  # garbage on its partition, with its events after it
    last_of_job = max((e for e in events if e.job_id == events[-1].job_id), key=lambda e: e.version)
    newer = {
        **events[-1].envelope(),
        "type": "JobArchived",
        "version": last_of_job.version + 1,
        "prev_hash": last_of_job.hash,  # chained like any event: no break to report
    }
    records = [
        *as_records(events[:half]),
        (late_job.encode(), GARBAGE, [("event_type", b"JobCompleted")]),
        *as_records(resent),
        *as_records(resent),
        (events[-1].job_id.encode(), json.dumps(newer).encode(), []),
    ]
    publish(broker, topic, records)

    got = Collector()
    stats = open_consumer(consumers, broker, topic, got).run(until_idle=1.5)

    assert len(got.keys()) == len(set(got.keys())) == len(events) + 1
    assert sorted(got.keys()) == sorted(
        [(e.job_id, e.version) for e in events] + [(newer["job_id"], newer["version"])]
    )
    for job_id, versions in by_job(got.seen).items():
        assert versions == list(range(1, len(versions) + 1)), job_id
    typed = {(e.job_id, e.version): e for e in got.seen if isinstance(e, Event)}
    assert all(typed[(e.job_id, e.version)] == e for e in events)
    raw = [e for e in got.seen if isinstance(e, RawEvent)]
    assert [(r.type, r.version) for r in raw] == [("JobArchived", newer["version"])]
    assert (stats.duplicates, stats.gaps, stats.dead_lettered) == (len(resent), 0, 1)
    assert stats.chain_breaks == 0  # every link checked, across duplicates and a raw event

    [dead] = read_raw(broker, topic + DEAD_LETTER_SUFFIX)
    headers = dict(dead.headers)
    assert (dead.key, dead.value) == (late_job.encode(), GARBAGE)
    assert headers["event_type"] == b"JobCompleted"  # the original headers are kept
    assert b"not JSON" in headers["dead_letter_reason"]
    assert headers["original_topic"] == topic.encode()
    assert int(headers["original_offset"]) >= 0
    assert int(headers["original_partition"]) in range(3)


@pytest.mark.kafka
def test_a_gap_in_a_jobs_versions_is_reported_and_the_rest_still_handed_on(
    broker: Broker, consumers: list[JobEventConsumer], events: list[Event]
) -> None:
    topic = new_topic(broker, partitions=1)
    job_id = max(by_job(events).items(), key=lambda item: len(item[1]))[0]
    history = [e for e in events if e.job_id == job_id]
    assert len(history) >= 4
    missing = history[2]
    publish(broker, topic, as_records([e for e in history if e is not missing]))

    gaps: list[Gap] = []
    got = Collector()
    stats = open_consumer(consumers, broker, topic, got, on_gap=gaps.append).run(until_idle=1)

    assert [(g.job_id, g.expected, g.received) for g in gaps] == [(job_id, 3, 4)]
    assert (gaps[0].topic, gaps[0].partition, gaps[0].offset) == (topic, 0, 2)
    assert stats.gaps == 1
    assert [e.version for e in got.seen] == [1, 2, *range(4, len(history) + 1)]


@pytest.mark.kafka
def test_a_forged_record_whose_prev_hash_is_not_the_previous_events_hash_is_reported(
    broker: Broker,
    consumers: list[JobEventConsumer],
    events: list[Event],
    caplog: pytest.LogCaptureFixture,
) -> None:
    topic = new_topic(broker, partitions=1)
    jobs = sorted(by_job(events).items(), key=lambda item: len(item[1]), reverse=True)
    job_id, other_id = jobs[0][0], jobs[1][0]
    history = [e for e in events if e.job_id == job_id]
    other = [e for e in events if e.job_id == other_id]
    assert len(history) >= 4 and len(other) >= 2
    forged = replace(history[2], prev_hash="0" * 64)  # its own hash left as it was
    first = replace(other[0], prev_hash="e" * 64)  # a version 1 must have prev_hash ""
    published = [*history[:2], forged, *history[3:], first, *other[1:]]
    publish(broker, topic, as_records(published))

    breaks: list[ChainBreak] = []
    got = Collector()
    stats = open_consumer(consumers, broker, topic, got, on_chain_break=breaks.append).run(
        until_idle=1
    )
    assert [(b.job_id, b.version, b.expected, b.received) for b in breaks] == [
        (job_id, 3, history[1].hash, "0" * 64),
        (other_id, 1, "", "e" * 64),
    ]
    assert (breaks[0].topic, breaks[0].partition, breaks[0].offset) == (topic, 0, 2)
    assert (stats.chain_breaks, stats.gaps, stats.duplicates) == (2, 0, 0)
    assert got.keys() == [(e.job_id, e.version) for e in published]  # still handed on
    assert "2 broken chain(s)" in stats.summary()

    with caplog.at_level(logging.WARNING, logger="jobtrail.adapters.kafka"):
        logged = open_consumer(consumers, broker, topic, Collector()).run(until_idle=1)
    assert logged.chain_breaks == 2
    assert f"broken chain in job {job_id} at version 3: prev_hash {'0' * 64}" in caplog.text

    unchecked = open_consumer(consumers, broker, topic, Collector(), check_chains=False)
    assert unchecked.run(until_idle=1).chain_breaks == 0


@pytest.mark.kafka
def test_offsets_are_committed_only_after_the_handler_succeeded(
    broker: Broker, consumers: list[JobEventConsumer], events: list[Event]
) -> None:
    topic, group = new_topic(broker, partitions=1), unique_name("consumer-group")
    records = as_records(events)
    records.insert(2, (None, GARBAGE, []))
    publish(broker, topic, records)
    failing = events[5]

    first = Collector(fail_on=(failing.job_id, failing.version))
    consumer = open_consumer(consumers, broker, topic, first, group=group)
    with pytest.raises(EventHandlerFailed, match="the billing service is down") as raised:
        consumer.run(until_idle=5)
    assert f"job {failing.job_id}, version {failing.version}" in str(raised.value)
    assert first.seen == events[:5]
    assert consumer.stats.dead_lettered == 1
    with pytest.raises(EventHandlerFailed):  # run() again is a retry: the same record
        consumer.run(until_idle=5)
    assert first.seen == events[:5]
    consumer.close()

    second = Collector(stop_after=len(events) - 5)
    again = open_consumer(consumers, broker, topic, second, group=group)
    again.run(until_idle=5, stop=second.done)

    assert second.seen == events[5:]  # from the failed record on, nothing before it
    assert again.stats.dead_lettered == 0  # committed past the garbage the first time
    assert len(read_raw(broker, topic + DEAD_LETTER_SUFFIX)) == 1


@pytest.mark.kafka
def test_consume_prints_every_event_as_json_lines_and_as_text(
    broker: Broker, events: list[Event], capsys: pytest.CaptureFixture[str]
) -> None:
    topic = new_topic(broker)
    publish(broker, topic, [*as_records(events), (None, GARBAGE, [])])
    base = ["consume", "--kafka", broker.bootstrap, "--topic", topic, "--from-beginning"]

    assert cli.main([*base, "--json", "--until-idle", "1"]) == 0
    out, err = capsys.readouterr()
    printed = [json.loads(line) for line in out.splitlines()]
    assert sorted(printed, key=lambda e: e["position"]) == [e.envelope() for e in events]
    assert f"handled {len(events)} event(s)" in err and "1 dead-lettered" in err

    assert cli.main([*base, "--until-idle", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(events)
    for event in events:
        expected = f"{event.job_id} v{event.version} {event.type} "
        assert sum(expected in line for line in lines) == 1, expected


def test_consume_with_an_unreachable_broker_says_so_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening: refused
        code = cli.main(["consume", "--kafka", address, "--connect-timeout", "0.5"])
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"jobtrail: error: The Kafka broker at {address} is unreachable: "
        f"KafkaTimeoutError: Unable to bootstrap from {address}."
    ]


def test_the_consumer_class_translates_an_unreachable_broker() -> None:
    with pytest.raises(BrokerUnavailable, match="is unreachable"):
        JobEventConsumer(print, bootstrap="127.0.0.1:1", topic="t", connect_timeout=0.2)
