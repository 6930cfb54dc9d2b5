"""A consumer's lag: records on its topic after its position, per partition.

`jobtrail consume --metrics-port` serves it. The figure is the consumer's own (its
positions against the log-end offsets), read at scrape time from the scrape's thread
(`JobEventConsumer.lag`, which serializes with the poll loop) and kept for ``interval``
seconds: each read is a broker round trip, and Prometheus may scrape more often than the
figure is worth. Labels are the topic, the partition and the group: partitions are few.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Protocol

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger("jobtrail.metrics")

LAG_NAME = "jobtrail_consumer_lag_records"
LAG_HELP = "Records on the topic after the consumer's position (log-end offset - position)"
LABELS = ["topic", "partition", "group"]
DEFAULT_INTERVAL = 5.0
"""Seconds a read of the lag is served before the next scrape reads it again."""


class LagSource(Protocol):
    """What the collector reads: `JobEventConsumer`, or a fake in the tests."""

    @property
    def topic(self) -> str: ...

    @property
    def group(self) -> str | None: ...

    def lag(self) -> Mapping[int, int]: ...


def lag_family(topic: str, group: str | None, lags: Mapping[int, int]) -> GaugeMetricFamily:
    """The gauge, one sample per partition (group ``""`` for a consumer without a group)."""
    family = GaugeMetricFamily(LAG_NAME, LAG_HELP, labels=LABELS)
    for partition, records in sorted(lags.items()):
        family.add_metric([topic, str(partition), group or ""], records)
    return family


class ConsumerLagCollector(Collector):
    """One consumer's lag, read at most every ``interval`` seconds at scrape time."""

    def __init__(
        self,
        consumer: LagSource,
        interval: float = DEFAULT_INTERVAL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.interval = interval
        self.monotonic = monotonic
        self._lags: dict[int, int] | None = None
        self._read_at = 0.0

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(LAG_NAME, LAG_HELP, labels=LABELS)]  # no read when registered

    def collect(self) -> Iterator[Metric]:
        lags = self._lags
        if lags is None or self.monotonic() - self._read_at >= self.interval:
            try:
                lags = dict(self.consumer.lag())
            except Exception as error:  # noqa: BLE001 - a scrape must answer; the gauge is left out
                log.warning("consumer lag not read: %s", error)
                self._lags = None
                return
            # No partitions yet (before the group's assignment) cost no round trip: not kept,
            # so the first scrape after the assignment shows them.
            self._lags, self._read_at = (lags or None), self.monotonic()
        yield lag_family(self.consumer.topic, self.consumer.group, lags)
