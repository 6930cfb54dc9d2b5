"""Queue-wide gauges read from the database, for `jobtrail metrics`.

Workers count what they do; what the queue holds (jobs by status and type, the oldest
waiting job, leases about to end, each relay's lag) is a fact of the database, the same
whichever worker is asked, so one exporter process reads it. `QueueCollector` reads at
scrape time, at most once per ``interval`` seconds (later scrapes within it get the same
snapshot): a few indexed reads — a GROUP BY on `job` (the `job_type_status` index), the
oldest due queued job, a count of the running jobs' leases by expiry (the `job_running`
index), and the relay positions against the log's last position. A read that fails gives
``jobtrail_exporter_up 0`` and no other gauge, with a log line, rather than an error page.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from jobtrail.adapters.metrics.relay import lag_family, log_head, relay_positions
from jobtrail.adapters.metrics.worker import MAX_LABEL_SETS, OTHER
from jobtrail.adapters.sql.errors import translated_errors
from jobtrail.adapters.sql.schema import LEASE_COLUMN, job
from jobtrail.domain.status import JobStatus
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, case, func, select

log = logging.getLogger("jobtrail.metrics")

DEFAULT_INTERVAL = 5.0
DEFAULT_LEASE_WINDOW = 30.0
"""Leases ending within this many seconds are "expiring" (the worker's default lease)."""
STATUSES = tuple(status.value for status in JobStatus)


@dataclass
class Snapshot:
    """What one read of the database found."""

    jobs: dict[tuple[str, str], int] = field(default_factory=dict)
    """(status, job type) -> jobs."""
    oldest_queued_age: float = 0.0
    leases_expiring: int = 0
    leases_expired: int = 0
    head: int = 0
    relays: dict[str, int] = field(default_factory=dict)


def read_snapshot(
    conn: Connection, now: datetime, lease_window: float, limit: int = MAX_LABEL_SETS
) -> Snapshot:
    snapshot = Snapshot()
    counted = select(job.c.status, job.c.job_type, func.count()).group_by(
        job.c.status, job.c.job_type
    )
    for status, job_type, count in conn.execute(counted):
        snapshot.jobs[(str(status), str(job_type))] = int(count)
    snapshot.jobs = bounded_types(snapshot.jobs, limit)
    oldest = conn.execute(
        select(func.min(job.c.available_at)).where(
            job.c.status == JobStatus.QUEUED, job.c.available_at <= now
        )
    ).scalar_one()
    if oldest is not None:
        snapshot.oldest_queued_age = max((now - _utc(oldest)).total_seconds(), 0.0)
    soon = now + timedelta(seconds=lease_window)
    lease = job.c[LEASE_COLUMN]
    expiring, expired = conn.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((lease < now, 1), else_=0)), 0),
        ).where(job.c.status == JobStatus.PROCESSING, lease <= soon)
    ).one()
    snapshot.leases_expiring, snapshot.leases_expired = int(expiring), int(expired)
    snapshot.head = log_head(conn)
    snapshot.relays = relay_positions(conn)
    return snapshot


def bounded_types(jobs: dict[tuple[str, str], int], limit: int) -> dict[tuple[str, str], int]:
    """At most ``limit`` job types (the most numerous); the rest summed under ``other``."""
    totals: dict[str, int] = {}
    for (_, job_type), count in jobs.items():
        totals[job_type] = totals.get(job_type, 0) + count
    if len(totals) <= limit:
        return jobs
    kept = set(sorted(totals, key=lambda t: (-totals[t], t))[: limit - 1])
    folded: dict[tuple[str, str], int] = {}
    for (status, job_type), count in jobs.items():
        key = (status, job_type if job_type in kept else OTHER)
        folded[key] = folded.get(key, 0) + count
    return folded


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def families(snapshot: Snapshot) -> Iterator[Metric]:
    jobs = GaugeMetricFamily(
        "jobtrail_jobs", "Jobs in the job table, by status and type", labels=["status", "job_type"]
    )
    for job_type in sorted({job_type for _, job_type in snapshot.jobs}):
        for status in STATUSES:  # every status of a known type, zeros too: no gaps in graphs
            jobs.add_metric([status, job_type], snapshot.jobs.get((status, job_type), 0))
    yield jobs
    yield GaugeMetricFamily(
        "jobtrail_oldest_queued_job_age_seconds",
        "Age of the oldest queued job that is due, from its available_at (0: none)",
        value=snapshot.oldest_queued_age,
    )
    yield GaugeMetricFamily(
        "jobtrail_leases_expiring",
        "Leases of running jobs ending within the lease window (expired ones included)",
        value=snapshot.leases_expiring,
    )
    yield GaugeMetricFamily(
        "jobtrail_leases_expired",
        "Leases past their expiry, waiting for the reaper",
        value=snapshot.leases_expired,
    )
    yield GaugeMetricFamily(
        "jobtrail_log_head_position", "The last position of the event log", value=snapshot.head
    )
    yield lag_family(snapshot.head, snapshot.relays)


class QueueCollector(Collector):
    """The queue-wide gauges, read from the database at scrape time (cached ``interval`` s)."""

    def __init__(
        self,
        engine: Engine,
        interval: float = DEFAULT_INTERVAL,
        lease_window: float = DEFAULT_LEASE_WINDOW,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.interval = interval
        self.lease_window = lease_window
        self.now = now
        self.monotonic = monotonic
        self._snapshot: Snapshot | None = None
        self._read_at = 0.0

    def read(self) -> Snapshot:
        """Read the database now (a failure raises a jobtrail error: `StorageError`, …)."""
        with translated_errors(), self.engine.connect() as conn:
            snapshot = read_snapshot(conn, self.now(), self.lease_window)
        self._snapshot, self._read_at = snapshot, self.monotonic()
        return snapshot

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily("jobtrail_exporter_up", "")]  # no read when registered

    def collect(self) -> Iterator[Metric]:
        snapshot = self._snapshot
        if snapshot is None or self.monotonic() - self._read_at >= self.interval:
            try:
                snapshot = self.read()
            except Exception as error:  # noqa: BLE001 - a scrape must answer: up 0
                log.warning("queue gauges not read: %s", error)
                snapshot = None
                self._snapshot = None
        yield GaugeMetricFamily(
            "jobtrail_exporter_up",
            "1 if the exporter's last read of the database succeeded, else 0",
            value=1 if snapshot is not None else 0,
        )
        if snapshot is not None:
            yield from families(snapshot)
