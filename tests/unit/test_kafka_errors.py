"""kafka-python's errors become jobtrail's in one place (`adapters/kafka/errors.translated`)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from jobtrail.adapters.kafka.codec import Record
from jobtrail.adapters.kafka.errors import (
    BrokerError,
    BrokerRefused,
    BrokerUnavailable,
    translated,
)
from jobtrail.adapters.kafka.publisher import KafkaPublisher, KafkaSettings
from kafka import errors as kafka_errors


@pytest.mark.parametrize(
    "error",
    [
        kafka_errors.KafkaConnectionError("connection refused"),
        kafka_errors.KafkaTimeoutError("Failed to update metadata after 10.0 secs."),
        kafka_errors.NodeNotReadyError(1),
        kafka_errors.RequestTimedOutError(),
        kafka_errors.LeaderNotAvailableError(),
        kafka_errors.NotEnoughReplicasError(),
        kafka_errors.BrokerNotAvailableError(),
    ],
)
def test_connection_level_errors_mean_the_broker_is_unavailable(error: Exception) -> None:
    with (
        pytest.raises(BrokerUnavailable, match="at b:9092 is unreachable") as raised,
        translated("b:9092"),
    ):
        raise error
    assert raised.value.__cause__ is error
    assert type(error).__name__ in str(raised.value)


@pytest.mark.parametrize(
    "error",
    [
        kafka_errors.TopicAuthorizationFailedError(),
        kafka_errors.MessageSizeTooLargeError(),
        kafka_errors.InvalidTopicError(),
        kafka_errors.CommitFailedError(),
        kafka_errors.IllegalStateError("producer closed"),
    ],
)
def test_other_kafka_errors_mean_the_broker_refused(error: Exception) -> None:
    with pytest.raises(BrokerRefused, match="at b:9092 refused the request"), translated("b:9092"):
        raise error


def test_errors_that_are_not_kafka_s_pass_through() -> None:
    with pytest.raises(ValueError, match="mine"), translated("b:9092"):
        raise ValueError("mine")


def test_importing_the_errors_does_not_load_kafka() -> None:
    code = (
        "import sys, jobtrail.adapters.kafka.errors as e; "
        "assert not [m for m in sys.modules if m == 'kafka' or m.startswith('kafka.')], "
        "sorted(m for m in sys.modules if m.startswith('kafka'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class _Producer:
    """A producer whose sends fail as kafka-python's do."""

    def __init__(self, error: Exception | None = None, on_get: Exception | None = None) -> None:
        self.error, self.on_get, self.closed = error, on_get, False

    def send(self, topic: str, **record: Any) -> Any:
        if self.error is not None:
            raise self.error
        on_get = self.on_get

        class Future:
            def get(self, timeout: float) -> None:
                if on_get is not None:
                    raise on_get

        return Future()

    def close(self, timeout: float = 0.0) -> None:
        self.closed = True


def _publisher(producer: _Producer) -> KafkaPublisher:
    publisher = KafkaPublisher(KafkaSettings(bootstrap="b:9092", topic="t", timeout=0.1))
    publisher._topic_ready = True
    publisher._producer = producer  # type: ignore[assignment]
    return publisher


RECORDS = [Record(b"job", b"{}", [])]


def test_a_failed_send_throws_the_producer_away() -> None:
    producer = _Producer(error=kafka_errors.KafkaTimeoutError("no metadata"))
    publisher = _publisher(producer)
    with pytest.raises(BrokerUnavailable):
        publisher.send(RECORDS)
    assert producer.closed and publisher._producer is None


def test_a_refused_acknowledgement_is_a_broker_error_and_throws_the_producer_away() -> None:
    producer = _Producer(on_get=kafka_errors.MessageSizeTooLargeError())
    publisher = _publisher(producer)
    acknowledgement = publisher.send(RECORDS)
    with pytest.raises(BrokerError) as raised:
        acknowledgement.wait()
    assert isinstance(raised.value, BrokerRefused)
    assert producer.closed and publisher._producer is None
