"""`jobtrail replay --source kafka`: the topic read from the beginning into staging.

The Kafka client is imported when a topic is read, not with this module: nothing connects
to or loads Kafka at import time. Seals are not published on the topic, so a topic's
replay checks histories only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from jobtrail.adapters.audit.checks.records import Problem, StoredEvent
from jobtrail.adapters.audit.published import stored_event
from jobtrail.adapters.audit.reads import LogTables
from jobtrail.adapters.audit.staging import Loaded, Staging, staged_events
from jobtrail.adapters.kafka.errors import BrokerUnavailable, UndecodableMessage, translated
from jobtrail.adapters.kafka.security import KafkaSecurity


def load_topic(
    bootstrap: str,
    topic: str,
    idle_seconds: float = 2.0,
    security: KafkaSecurity | None = None,
) -> Loaded:
    """Every record of ``topic``, read from the beginning of each partition without a group,
    until none arrives for ``idle_seconds`` (end offsets are not trusted: see
    docs/kafka-notes.md). Records of different partitions interleave; replay orders them.

    ``security`` (TLS, SASL) defaults to the ``JOBTRAIL_KAFKA_*`` variables, as the CLI's
    bootstrap address does: it is checked before anything connects."""
    from kafka import KafkaConsumer, TopicPartition

    security = KafkaSecurity.from_env() if security is None else security
    staging = Staging()
    loaded = Loaded(staging, LogTables(staged_events, None), [])
    try:
        with translated(bootstrap, security):
            consumer = KafkaConsumer(
                **security.client_config(10.0),
                bootstrap_servers=bootstrap,
                group_id=None,
                enable_auto_commit=False,
                bootstrap_timeout_ms=10_000,
            )
            try:
                partitions = sorted(consumer.partitions_for_topic(topic) or ())
                if not partitions:
                    raise BrokerUnavailable(bootstrap=bootstrap, reason=f"no topic {topic!r}")
                assigned = [TopicPartition(topic, p) for p in partitions]
                consumer.assign(assigned)
                consumer.seek_to_beginning(*assigned)
                staging.add_events(_topic_events(consumer, loaded, idle_seconds))
            finally:
                consumer.close()
    except BaseException:
        staging.close()
        raise
    return loaded


def _topic_events(consumer: Any, loaded: Loaded, idle_seconds: float) -> Iterator[StoredEvent]:
    """The topic's events until it is quiet; records that are no envelope become problems."""
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < idle_seconds:
        batches = consumer.poll(timeout_ms=200, max_records=5000)
        if batches:
            quiet_since = time.monotonic()
        for records in batches.values():
            for record in records:
                try:
                    yield stored_event(record.value)
                except UndecodableMessage as error:
                    loaded.problems.append(
                        Problem(
                            "undecodable",
                            f"partition {record.partition} offset {record.offset}: {error}",
                        )
                    )
