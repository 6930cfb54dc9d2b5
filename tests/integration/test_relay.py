"""The relay loop against a real database and a publisher that fails on demand.

The Kafka side is covered in test_relay_kafka.py; here the publisher is a fake so each
failure can be placed exactly: what matters is what the relay stores and re-sends.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import pytest
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.kafka.codec import Record, decode, encode
from jobtrail.adapters.kafka.errors import BrokerError, BrokerRefused, BrokerUnavailable
from jobtrail.adapters.kafka.relay import Relay, RelaySettings
from jobtrail.adapters.kafka.relay_position import SqlRelayPosition
from jobtrail.adapters.kafka.relay_source import LogBatch, PrefetchingSource, SqlRecordSource
from jobtrail.domain.events import Event
from jobtrail.domain.ports import SystemClock
from jobtrail.domain.services import JobSpec
from jobtrail.processors.engine.worker import WorkerSettings

from tests.helpers import event_count


@dataclass
class Acknowledged:
    publisher: FlakyPublisher
    events: list[Event]
    refused: bool

    def wait(self) -> None:
        if self.refused:
            raise self.publisher.error(bootstrap="test:9092", reason="refused")
        self.publisher.sent.extend(self.events)


class FlakyPublisher:
    """Acknowledges batches, except that it refuses the next `failures` of them."""

    def __init__(self, failures: int = 0, error: type[BrokerError] = BrokerUnavailable) -> None:
        self.failures = failures
        self.error = error
        self.sent: list[Event] = []
        self.attempts = 0

    def send(self, records: Sequence[Record]) -> Acknowledged:
        """Takes the batch at once; the broker's answer comes with `wait()`, as with Kafka."""
        self.attempts += 1
        refused = self.failures > 0
        self.failures -= refused
        events = [decode(record.value) for record in records]
        assert all(isinstance(event, Event) for event in events)
        return Acknowledged(self, events, refused)  # type: ignore[arg-type]

    def close(self) -> None:
        pass


def make_relay(
    trail: Jobtrail, publisher: FlakyPublisher, owner: str = "relay-a", **settings: float
) -> Relay:
    positions = SqlRelayPosition(trail.engine, name="job-events")
    config = RelaySettings(**{"batch": 7, "poll": 0.01, "max_backoff": 0.05, **settings})  # type: ignore[arg-type]
    source = PrefetchingSource(SqlRecordSource(trail.engine))  # as `connect().relay` wires it
    return Relay(source, positions, publisher, SystemClock(), config, owner=owner)


def submit(trail: Jobtrail, count: int) -> None:
    trail.submit_many([JobSpec("asset_image_generation") for _ in range(count)])


def test_every_event_is_published_once_in_position_order(trail: Jobtrail) -> None:
    submit(trail, 20)
    publisher = FlakyPublisher()
    make_relay(trail, publisher).run(until_caught_up=True)
    positions = [e.position for e in publisher.sent]
    assert positions == sorted(positions) and len(set(positions)) == event_count(trail) == 20


def test_the_position_is_stored_only_after_the_broker_acknowledged(trail: Jobtrail) -> None:
    submit(trail, 10)
    publisher = FlakyPublisher(failures=1)
    relay = make_relay(trail, publisher)
    relay.step()  # refused: nothing acknowledged, nothing stored
    assert relay.positions.holder()[1] == 0
    relay.step()
    assert relay.positions.holder()[1] == publisher.sent[-1].position == 7


def test_a_refused_batch_is_sent_again_and_nothing_is_lost(
    trail: Jobtrail, caplog: pytest.LogCaptureFixture
) -> None:
    submit(trail, 30)
    publisher = FlakyPublisher(failures=3)
    with caplog.at_level(logging.WARNING, logger="jobtrail.adapters.kafka.relay"):
        make_relay(trail, publisher).run(until_caught_up=True)
    assert [e.position for e in publisher.sent] == list(range(1, 31))
    assert publisher.attempts >= 3 + 5  # 30 events in batches of 7, three refused
    assert "Kafka broker at test:9092 is unreachable: refused. Retrying in" in caplog.text


def test_a_request_the_broker_refused_is_retried_and_logged_as_an_error(
    trail: Jobtrail, caplog: pytest.LogCaptureFixture
) -> None:
    """BrokerRefused (an ACL, a record too large) is no reason to stop publishing silently:
    the relay keeps trying, loudly, while the operator fixes it."""
    submit(trail, 10)
    publisher = FlakyPublisher(failures=2, error=BrokerRefused)
    with caplog.at_level(logging.WARNING, logger="jobtrail.adapters.kafka.relay"):
        make_relay(trail, publisher).run(until_caught_up=True)
    assert [e.position for e in publisher.sent] == list(range(1, 11))
    refused = [r for r in caplog.records if "refused the request" in r.getMessage()]
    assert refused and {r.levelno for r in refused} == {logging.ERROR}


def test_a_restarted_relay_resumes_after_the_stored_position(trail: Jobtrail) -> None:
    submit(trail, 10)
    first = FlakyPublisher()
    make_relay(trail, first).run(until_caught_up=True)
    submit(trail, 5)
    second = FlakyPublisher()
    make_relay(trail, second, owner="relay-a2").run(until_caught_up=True)
    assert [e.position for e in second.sent] == list(range(11, 16))


def test_a_standby_relay_publishes_nothing_while_the_lease_is_held(trail: Jobtrail) -> None:
    submit(trail, 10)
    active, standby = FlakyPublisher(), FlakyPublisher()
    first = make_relay(trail, active, owner="relay-a", lease=30)
    second = make_relay(trail, standby, owner="relay-b", lease=30)
    first.step()
    for _ in range(3):
        assert second.step() == 0
    assert standby.sent == [] and second.position is None
    first.run(until_caught_up=True)  # a clean stop releases the lease
    submit(trail, 2)
    second.run(until_caught_up=True)
    assert [e.position for e in standby.sent] == [11, 12]


def test_a_relay_that_lost_its_lease_stops_publishing(trail: Jobtrail) -> None:
    submit(trail, 10)
    publisher = FlakyPublisher()
    stalled = make_relay(trail, publisher, owner="relay-a", lease=0.05)
    stalled.step()
    threading.Event().wait(0.1)  # the lease runs out while relay-a "hangs"
    taker = make_relay(trail, FlakyPublisher(), owner="relay-b", lease=30)
    assert taker.step() == 3  # from the stored position 7
    assert stalled.step() == 0 and stalled.position is None
    assert len(publisher.sent) == 7


def test_draining_publishes_what_is_in_the_log_then_stops(trail: Jobtrail) -> None:
    submit(trail, 12)
    publisher = FlakyPublisher()
    relay = make_relay(trail, publisher)
    relay.stop(drain=True)
    relay.run()
    assert len(publisher.sent) == 12
    assert relay.positions.holder()[0] is None  # released on the way out


def test_the_relay_command_explains_an_unreachable_broker_and_keeps_its_position(
    sqlite_url: str,
) -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        bootstrap = f"127.0.0.1:{closed.getsockname()[1]}"
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": sqlite_url, "PYTHONUNBUFFERED": "1"}
    subprocess.run(
        [sys.executable, "-m", "jobtrail", "submit", "asset_image_generation"],
        env=env,
        check=True,
        capture_output=True,
    )
    relay = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobtrail",
            "relay",
            "--kafka",
            bootstrap,
            "--broker-timeout",
            "0.5",
            "--until-caught-up",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    assert relay.stdout is not None
    for line in relay.stdout:
        lines.append(line)
        if "Retrying in" in line:
            break
    relay.send_signal(signal.SIGTERM)
    rest, _ = relay.communicate(timeout=30)
    output = "".join(lines) + rest
    assert relay.returncode == 0, output
    assert f"The Kafka broker at {bootstrap} is unreachable: KafkaTimeoutError" in output
    assert "relay stopped at position 0" in output


def test_the_relay_s_records_are_exactly_the_encoded_events(trail: Jobtrail) -> None:
    """The relay reads stored JSON text and splices it; the result must equal `encode`."""
    trail.submit_many([JobSpec("asset_image_generation", {"note": 'quote " ✓', "n": 2.5})])
    trail.worker(WorkerSettings(until_empty=True, poll_seconds=0.01)).run()
    events = list(trail.store.read_all())
    batch = SqlRecordSource(trail.engine).records_after(0, 100)
    assert batch.last_position == events[-1].position
    for record, event in zip(batch.records, events, strict=True):
        assert json.loads(record.value) == json.loads(encode(event).value)
        assert record.key == encode(event).key
        assert record.headers == encode(event).headers


def positions(batch: LogBatch) -> list[int]:
    return [json.loads(record.value)["position"] for record in batch.records]


def test_a_prefetched_batch_is_used_only_where_it_was_read_from(trail: Jobtrail) -> None:
    submit(trail, 6)
    source = PrefetchingSource(SqlRecordSource(trail.engine))
    try:
        assert positions(source.records_after(0, 3)) == [1, 2, 3]
        assert positions(source.records_after(3, 3)) == [4, 5, 6]  # prefetched
        # a resend from an earlier position reads afresh, whatever was prefetched
        assert positions(source.records_after(1, 3)) == [2, 3, 4]
        # an empty prefetch (caught up) is not trusted: what was appended since is read
        assert positions(source.records_after(6, 3)) == []
        source.records_after(3, 3)  # prefetches after 6: nothing yet
        submit(trail, 2)
        assert positions(source.records_after(6, 3)) == [7, 8]
    finally:
        source.close()
