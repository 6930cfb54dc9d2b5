"""The relay's lag: events in the log after the position the broker acknowledged.

Read from the database at scrape time (the `relay_position` row against the log's last
position), not from the relay's memory, so the figure is the same whoever reads it — the
relay itself, a standby, or the `jobtrail metrics` exporter — and it keeps growing when the
relay is down, which is when it matters.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from jobtrail.adapters.sql.schema import job_events, relay_position
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, func, select

log = logging.getLogger("jobtrail.metrics")

LAG_NAME = "jobtrail_relay_lag_events"
LAG_HELP = "Events in the log after the relay's acknowledged position (relay_position)"


def log_head(conn: Connection) -> int:
    """The last position of the log (0 when it is empty)."""
    return int(conn.execute(select(func.coalesce(func.max(job_events.c.position), 0))).scalar_one())


def relay_positions(conn: Connection, name: str | None = None) -> dict[str, int]:
    """Each relay's acknowledged position, by relay name (the topic); one relay's with ``name``."""
    query = select(relay_position.c.name, relay_position.c.position)
    if name is not None:
        query = query.where(relay_position.c.name == name)
    return {str(row.name): int(row.position) for row in conn.execute(query)}


def lag_family(head: int, positions: dict[str, int]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(LAG_NAME, LAG_HELP, labels=["relay"])
    for relay, position in sorted(positions.items()):
        family.add_metric([relay], max(head - position, 0))
    return family


class RelayLagCollector(Collector):
    """One relay's lag, read at each scrape (two indexed reads)."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily(LAG_NAME, LAG_HELP, labels=["relay"])]

    def collect(self) -> Iterator[Metric]:
        try:
            with self.engine.connect() as conn:
                head = log_head(conn)
                positions = relay_positions(conn, self.name)
        except Exception as error:  # noqa: BLE001 - a scrape must answer; the gauge is left out
            log.warning("relay lag not read: %s", error)
            return
        if not positions:  # the relay has not started yet: everything is to publish
            positions = {self.name: 0}
        yield lag_family(head, positions)
