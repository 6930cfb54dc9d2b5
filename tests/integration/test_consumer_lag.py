"""A consumer's lag (`jobtrail_consumer_lag_records`) against the records it read.

Events are published by the real relay (SQLite log → the test broker), read in part by a
`JobEventConsumer` of a group, and its endpoint is scraped over HTTP and parsed with
prometheus_client's own parser: the lag is what was published minus what was read, and 0
once everything is. `jobtrail consume --metrics-port` serves the same gauge. The collector's
cache and failure handling are checked with a fake consumer (no broker).

The relay publishes one event per run here (submit one, relay until caught up, again):
Tansu 0.6.0 (the test broker) answers `ListOffsets` LATEST with the base offset of a
partition's last record batch + 1, not its last offset + 1, so when its last batch holds
several records its end offsets — and any lag computed from them — are short (Apache
Kafka's are not; Tansu's fetch responses carry the right high watermark). A relay run that
publishes a single event writes a batch of one, whatever the relay's pipelining.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import pytest
from jobtrail.adapters.bootstrap import connect
from jobtrail.adapters.cli.main import main
from jobtrail.adapters.kafka.codec import RawEvent
from jobtrail.adapters.kafka.consumer import JobEventConsumer
from jobtrail.adapters.kafka.errors import BrokerUnavailable
from jobtrail.adapters.kafka.publisher import KafkaSettings
from jobtrail.adapters.metrics.consumer import LAG_NAME, ConsumerLagCollector
from jobtrail.adapters.metrics.server import serve
from jobtrail.domain.events import Event
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.kafka_broker import Broker, free_port, unique_name

PARTITIONS = 3
JOBS = 30  # one JobQueued each: 30 records over 3 partitions (key = job id)

Lags = dict[tuple[str, str, str], float]  # (topic, partition, group) -> records


def lags(text: str) -> Lags:
    """The consumer-lag samples of an exposition, by their labels."""
    found: Lags = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == LAG_NAME:
                labels = sample.labels
                found[(labels["topic"], labels["partition"], labels["group"])] = sample.value
    return found


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        body: bytes = response.read()
    return body.decode()


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


# ------------------------------------------------------------------ against the broker


@pytest.fixture
def published(sqlite_url: str, kafka_broker: Broker) -> tuple[str, int]:
    """A topic the relay published a log of `JOBS` events to: its name and the event count."""
    trail = connect(sqlite_url)
    topic = unique_name("consumer-lag")
    kafka = KafkaSettings(kafka_broker.bootstrap, topic, partitions=PARTITIONS)
    try:
        for n in range(JOBS):  # one event per relay run: a record batch of one (see above)
            trail.submit("asset_image_generation", {"n": n})
            trail.relay(kafka).run(until_caught_up=True)
        count = len(list(trail.store.read_all()))
    finally:
        trail.close()
    assert count == JOBS
    return topic, count


@dataclass
class Counted:
    seen: int = 0

    def __call__(self, event: Event | RawEvent) -> None:
        self.seen += 1


@pytest.mark.kafka
def test_the_lag_is_what_was_published_minus_what_was_read(
    published: tuple[str, int], kafka_broker: Broker
) -> None:
    topic, total = published
    group = unique_name("lag-group")
    handler = Counted()
    consumer = JobEventConsumer(
        handler,
        bootstrap=kafka_broker.bootstrap,
        topic=topic,
        group=group,
        from_beginning=True,
        settings={**kafka_broker.group_settings, "max_poll_records": 4},
    )
    registry = CollectorRegistry()
    registry.register(ConsumerLagCollector(consumer, interval=0.0))  # every scrape reads
    server = serve(registry, 0)
    try:
        deadline = time.monotonic() + 30
        while handler.seen < 10:  # part of them: the group joins, then 4 records a poll
            assert time.monotonic() < deadline, "the consumer read nothing"
            consumer.poll(0.5)
        read = handler.seen
        assert 10 <= read < total
        assert consumer.stats.handled == read

        found = lags(scrape(server.port))
        assert set(found) == {(topic, str(p), group) for p in range(PARTITIONS)}
        assert sum(found.values()) == total - read
        assert all(value >= 0 for value in found.values())

        wait_until(lambda: consumer.poll(0.2) == 0 and handler.seen == total, 30, "the rest")
        found = lags(scrape(server.port))
        assert found == {(topic, str(p), group): 0 for p in range(PARTITIONS)}
    finally:
        server.stop()
        consumer.close()
    assert consumer.lag() == {}  # closed: nothing to say, and no error


@pytest.mark.kafka
def test_jobtrail_consume_serves_its_lag(published: tuple[str, int], kafka_broker: Broker) -> None:
    # Without --group (a group's join takes ~23 s on Tansu with the CLI's default session
    # timeout): every partition, and an empty group label.
    topic, total = published
    port = free_port()
    command = [
        *("consume", "--kafka", kafka_broker.bootstrap, "--topic", topic, "--from-beginning"),
        *("--until-idle", "60", "--metrics-port", str(port)),
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "jobtrail", *command],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    expected = {(topic, str(p), ""): 0.0 for p in range(PARTITIONS)}
    seen: list[Lags] = []

    def caught_up() -> bool:
        try:
            seen.append(lags(scrape(port)))
        except OSError:  # not listening yet
            return False
        return seen[-1] == expected

    try:
        # a read made mid-way is served for 5 s: the next one after it says 0
        wait_until(caught_up, 30, f"a lag of 0 on every partition (last: {seen[-1:]})")
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert len(out.splitlines()) == total
    assert f"handled {total} event(s)" in err


# ------------------------------------------------------------------ the CLI, no broker


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


def test_consume_on_a_taken_metrics_port_is_one_line_before_connecting(
    capsys: pytest.CaptureFixture[str], busy_port: int
) -> None:
    # 127.0.0.1:1 answers nobody: had the consumer connected, the error would name the broker
    argv = ["consume", "--kafka", "127.0.0.1:1", "--metrics-port", str(busy_port)]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().splitlines() == [
        f"jobtrail: error: Cannot serve metrics on 127.0.0.1:{busy_port}: Address already in use."
    ]


@pytest.mark.parametrize("port", ["0", "65536", "http"])
def test_a_consume_metrics_port_out_of_range_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], port: str
) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["consume", f"--metrics-port={port}"])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must be a whole number from 1 to 65535" in err


# ------------------------------------------------------------------ the collector, faked


@dataclass
class FakeConsumer:
    """Answers `lag()` with the next of `answers` (an exception is raised)."""

    answers: list[Mapping[int, int] | Exception]
    topic: str = "job-events"
    group: str | None = "billing"
    calls: int = 0
    _last: Mapping[int, int] = field(default_factory=dict)

    def lag(self) -> Mapping[int, int]:
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else self._last
        if isinstance(answer, Exception):
            raise answer
        self._last = answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def exposition(collector: ConsumerLagCollector) -> Lags:
    registry = CollectorRegistry()
    registry.register(collector)
    return lags(generate_latest(registry).decode())


def test_the_collector_serves_one_sample_per_partition_and_caches_the_read() -> None:
    fake = FakeConsumer([{0: 3, 2: 7, 1: 0}, {0: 1, 1: 0, 2: 0}])
    clock = Clock()
    collector = ConsumerLagCollector(fake, interval=5.0, monotonic=clock)
    first = {("job-events", "0", "billing"): 3, ("job-events", "1", "billing"): 0}
    first[("job-events", "2", "billing")] = 7
    assert exposition(collector) == first
    clock.now += 4.9
    assert exposition(collector) == first and fake.calls == 1  # within the interval: no read
    clock.now += 0.1
    assert exposition(collector) == {key: 1 if key[1] == "0" else 0 for key in first}
    assert fake.calls == 2


def test_a_failed_read_leaves_the_gauge_out_and_the_next_scrape_reads_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    unavailable = BrokerUnavailable(bootstrap="kafka:9092", reason="timed out")
    fake = FakeConsumer([{0: 5}, unavailable, {0: 2}])
    clock = Clock()
    collector = ConsumerLagCollector(fake, interval=5.0, monotonic=clock)
    assert exposition(collector) == {("job-events", "0", "billing"): 5}
    clock.now += 5
    with caplog.at_level(logging.WARNING, logger="jobtrail.metrics"):
        assert exposition(collector) == {}  # not the stale 5
    assert "consumer lag not read" in caplog.text and "kafka:9092" in caplog.text
    assert exposition(collector) == {("job-events", "0", "billing"): 2}  # no wait after it
    assert fake.calls == 3


def test_no_partitions_yet_is_not_kept_and_no_group_is_an_empty_label() -> None:
    fake = FakeConsumer([{}, {1: 4}], group=None)
    collector = ConsumerLagCollector(fake, interval=60.0, monotonic=Clock())
    assert exposition(collector) == {}
    assert exposition(collector) == {("job-events", "1", ""): 4}  # the assignment came
    assert fake.calls == 2
