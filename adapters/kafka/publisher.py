"""Publishing records to the topic with kafka-python, acknowledged or not at all.

`KafkaPublisher.send(records)` starts sending; its acknowledgement's `wait()` returns only
once the broker acknowledged every record (`acks="all"`, idempotent producer), and raises a
`BrokerError` otherwise (`BrokerUnavailable` or `BrokerRefused`: `errors.translated`).
After any failure the producer is thrown away and a new one is built for the next attempt:
an idempotent kafka-python 3.0.12 producer does not recover from an expired batch or a
broker restart by itself (docs/kafka-notes.md).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobtrail.adapters.kafka.codec import Record
from jobtrail.adapters.kafka.errors import BrokerError, translated
from jobtrail.adapters.kafka.partitioner import CachedKeyPartitioner
from jobtrail.adapters.kafka.security import KafkaSecurity
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str
    topic: str
    partitions: int = 6
    replication_factor: int = 1
    timeout: float = 10.0
    """Seconds a batch may wait for its acknowledgement before the broker counts as down."""
    security: KafkaSecurity = field(default_factory=KafkaSecurity)
    """TLS and SASL (default PLAINTEXT): used by the producer and the topic's admin client."""

    def producer_config(self) -> dict[str, Any]:
        timeout_ms = int(self.timeout * 1000)
        return {
            **self.security.client_config(self.timeout),
            "bootstrap_servers": self.bootstrap.split(","),
            "client_id": "jobtrail-relay",
            "enable_idempotence": True,
            "acks": "all",
            "linger_ms": 5,
            "batch_size": 256 * 1024,
            "partitioner": CachedKeyPartitioner(),
            "request_timeout_ms": max(timeout_ms // 2, 1000),
            "delivery_timeout_ms": timeout_ms,
            "max_block_ms": timeout_ms,
            "bootstrap_timeout_ms": timeout_ms,
        }


class KafkaPublisher:
    """Sends events keyed by job id; one producer at a time, rebuilt after a failure."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self._producer: KafkaProducer | None = None
        self._topic_ready = False

    def send(self, records: Sequence[Record]) -> KafkaAcknowledgement:
        """Start sending `records`; wait on the result for the broker's acknowledgement."""
        with self.discarded_on_failure():
            producer = self._ready_producer()
            topic = self.settings.topic
            futures = [
                producer.send(topic, key=r.key, value=r.value, headers=r.headers) for r in records
            ]
        return KafkaAcknowledgement(self, producer, futures)

    @contextlib.contextmanager
    def discarded_on_failure(self) -> Iterator[None]:
        """Kafka calls whose failure (a `BrokerError`) throws the producer away."""
        settings = self.settings
        try:
            with translated(settings.bootstrap, settings.security, settings.timeout):
                yield
        except BrokerError:
            self._discard_producer()
            raise

    def close(self) -> None:
        self._discard_producer(timeout=2.0)

    def _ready_producer(self) -> KafkaProducer:
        if not self._topic_ready:
            ensure_topic(self.settings)
            self._topic_ready = True
        if self._producer is None:
            self._producer = KafkaProducer(**self.settings.producer_config())
        return self._producer

    def _discard_producer(self, timeout: float = 0.0) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.close(timeout=timeout)
        except KafkaError as error:
            # kafka-python 3.0.12: close() flushes first, and a producer stuck after an expired
            # batch never flushes, so close() raises before it stops its network thread.
            log.debug("closing the old producer failed (%s); forcing its thread to stop", error)
            _force_close(producer)


@dataclass
class KafkaAcknowledgement:
    publisher: KafkaPublisher
    producer: KafkaProducer
    futures: list[Any]

    def wait(self) -> None:
        """Return once every record is acknowledged; a `BrokerError` when one was not.

        Waits on this batch's own futures, not `flush()`: a flush would also wait for the
        batch sent after this one, which is meant to be in flight meanwhile.
        """
        deadline = time.monotonic() + self.publisher.settings.timeout
        with self.publisher.discarded_on_failure():
            for future in self.futures:
                future.get(timeout=max(deadline - time.monotonic(), 0.0))


def ensure_topic(settings: KafkaSettings) -> None:
    """Create the topic with the configured partitions when it does not exist yet."""
    timeout_ms = int(settings.timeout * 1000)
    admin = KafkaAdminClient(
        **settings.security.client_config(settings.timeout),
        bootstrap_servers=settings.bootstrap.split(","),
        client_id="jobtrail-relay-admin",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )
    try:
        topic = NewTopic(settings.topic, settings.partitions, settings.replication_factor)
        admin.create_topics([topic])
        log.info("created topic %s with %d partitions", settings.topic, settings.partitions)
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def _force_close(producer: KafkaProducer) -> None:
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()
        sender.join(timeout=1.0)
    producer._closed = True  # nothing left to close; keeps __del__ from flushing again
