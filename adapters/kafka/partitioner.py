"""Kafka's default key partitioner, remembering the hash of recent keys.

A job's events share one key (its id) and sit close together in the log, and
kafka-python's murmur2 is pure Python: hashing every record's key again was a fifth of
the relay's per-record cost. The mapping is exactly Kafka's (the Java client's murmur2,
masked positive, modulo the partition count over the sorted partitions), so a job's
events land where any other Kafka producer would put that key.
"""

from __future__ import annotations

import functools
from typing import Any

from kafka.partitioner.default import DefaultPartitioner, murmur2

RECENT_KEYS = 65_536
"""Keys whose hash is remembered: the jobs of the last few hundred thousand events."""


def key_hash(key: bytes) -> int:
    """The positive murmur2 hash Kafka partitions a key by."""
    return int(murmur2(key)) & 0x7FFFFFFF


class CachedKeyPartitioner(DefaultPartitioner):  # type: ignore[misc]
    """`DefaultPartitioner` with the key hash cached; records without a key go to it."""

    def __init__(self, recent_keys: int = RECENT_KEYS) -> None:
        super().__init__()
        self._hash = functools.lru_cache(maxsize=recent_keys)(key_hash)

    def partition(
        self,
        topic: str,
        key: Any,
        serialized_key: bytes | None,
        value: Any,
        serialized_value: bytes | None,
        cluster: Any,
    ) -> int:
        partitions = cluster.partitions_for_topic(topic)
        if serialized_key is None or not partitions:
            return int(
                super().partition(topic, key, serialized_key, value, serialized_value, cluster)
            )
        return int(sorted(partitions)[self._hash(bytes(serialized_key)) % len(partitions)])
