"""The relay's partitioner puts every key where Kafka's default partitioner would."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from jobtrail.adapters.kafka.partitioner import CachedKeyPartitioner
from kafka.partitioner.default import DefaultPartitioner


class Cluster:
    """The two metadata calls a partitioner makes, for one topic."""

    def __init__(self, partitions: set[int], available: set[int] | None = None) -> None:
        self.partitions = partitions
        self.available = partitions if available is None else available

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return self.partitions if topic == "t" else None

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.available


def place(partitioner: DefaultPartitioner, key: bytes | None, cluster: Cluster) -> int:
    return int(partitioner.partition("t", key, key, b"v", b"v", cluster))


@given(
    keys=st.lists(st.binary(max_size=48) | st.uuids().map(lambda u: str(u).encode()), max_size=30),
    partitions=st.sets(st.integers(0, 63), min_size=1, max_size=12),
)
def test_every_key_lands_where_the_default_partitioner_puts_it(
    keys: list[bytes], partitions: set[int]
) -> None:
    cached, default, cluster = (
        CachedKeyPartitioner(recent_keys=4),
        DefaultPartitioner(),
        Cluster(partitions),
    )
    for key in keys + keys:  # the second time round, hashes come from the cache (or were evicted)
        assert place(cached, key, cluster) == place(default, key, cluster)


def test_a_remembered_key_follows_a_change_in_the_partition_count() -> None:
    partitioner, key = CachedKeyPartitioner(), b"0b6c6f5e-5bd4-4d6e-9d43-5b8d8f3f0a11"
    for count in (6, 7, 12, 6):
        cluster = Cluster(set(range(count)))
        assert place(partitioner, key, cluster) == place(DefaultPartitioner(), key, cluster)


def test_a_record_without_a_key_goes_to_an_available_partition() -> None:
    assert place(CachedKeyPartitioner(), None, Cluster({0, 1, 2}, available={2})) == 2


def test_the_producer_settings_use_it() -> None:
    from jobtrail.adapters.kafka.publisher import KafkaSettings

    assert isinstance(
        KafkaSettings("b:9092", "t").producer_config()["partitioner"], CachedKeyPartitioner
    )
