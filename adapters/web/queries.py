"""Every SQL statement of the dashboard, for SQLite and PostgreSQL.

The pages read the `job` table through its indexes (migration 0009: ``created_at, id`` and
``status, created_at, id``; keyset pagination, never OFFSET). The charts aggregate the log
itself inside their window: terminal events come from the ``type, occurred_at`` index, the
job type from the `job` table's key, a start's previous event from ``job_id, version``.
PostgreSQL computes the percentiles (``percentile_cont``); SQLite, the embedded default for
small logs, returns the durations and `percentile` computes the same interpolation. The
latency chart reads `rollup.LatencyRollup` once it is built; `latency` here serves until
then and is the oracle the rollup is tested against (its dialect expressions are public so
the rollup reads times exactly as these queries compute them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from jobtrail.adapters.audit.checks.history import JobResult, verify_job
from jobtrail.adapters.audit.checks.records import StoredEvent
from jobtrail.adapters.audit.reads import LIVE, stream_records
from jobtrail.adapters.sql.errors import translated_errors
from jobtrail.adapters.sql.schema import (
    ROW_COLUMNS,
    UtcDateTime,
    job,
    job_events,
    relay_position,
)
from jobtrail.adapters.web.params import JobFilter, Window
from sqlalchemy import Connection, Engine, Select, bindparam, func, select, text, tuple_

RUN_OUTCOMES = ("JobCompleted", "JobFailed", "JobRetryScheduled")
PERCENTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class JobHistory:
    """One job's stored events and the audit's verdict on them (`verify_job`)."""

    records: list[StoredEvent]
    verdict: JobResult | None


@dataclass(frozen=True)
class Lag:
    topic: str
    position: int
    behind: int


@dataclass(frozen=True)
class FailureCount:
    """Terminal events of one job type in one bucket, by outcome and error category."""

    bucket: int
    job_type: str
    event_type: str
    category: str | None
    count: int


@dataclass(frozen=True)
class Durations:
    """One bucket's percentiles of one kind (``wait`` or ``run``), in seconds."""

    bucket: int
    kind: str
    count: int
    p50: float
    p95: float
    p99: float


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """PostgreSQL's ``percentile_cont``: linear interpolation between the closest ranks."""
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class DashboardQueries:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.postgres = engine.dialect.name == "postgresql"

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        with translated_errors(), self.engine.connect() as conn:
            yield conn

    # ------------------------------------------------------------------ header

    def status_counts(self) -> dict[str, int]:
        query = select(job.c.status, func.count()).group_by(job.c.status)
        with self._connect() as conn:
            return {status: int(count) for status, count in conn.execute(query)}

    def relay_lag(self) -> list[Lag]:
        """Per topic: the relay's position and how many positions the log is ahead of it."""
        with self._connect() as conn:
            last = int(conn.execute(select(func.max(job_events.c.position))).scalar() or 0)
            rows = conn.execute(
                select(relay_position.c.name, relay_position.c.position).order_by(
                    relay_position.c.name
                )
            ).all()
        return [Lag(name, int(position), max(0, last - int(position))) for name, position in rows]

    # ------------------------------------------------------------------ jobs

    def jobs(self, where: JobFilter) -> list[dict[str, Any]]:
        """A page of the `job` table, newest first (``created_at, id`` descending)."""
        with self._connect() as conn:
            return [dict(row) for row in conn.execute(_jobs_query(where)).mappings()]

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self._connect() as conn:
            row = conn.execute(select(*ROW_COLUMNS).where(job.c.id == job_id)).mappings().first()
            return dict(row) if row else None

    def retries_of(self, job_id: str) -> list[dict[str, Any]]:
        query = (
            select(job.c.id, job.c.status, job.c.created_at)
            .where(job.c.retry_of == job_id)
            .order_by(job.c.created_at, job.c.id)
        )
        with self._connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def history(self, job_id: str) -> JobHistory:
        """The job's events as stored, checked as `jobtrail replay --job` checks them."""
        with self._connect() as conn, conn.begin():
            records = list(stream_records(conn, LIVE, job_id=job_id))
        return JobHistory(records, verify_job(records) if records else None)

    # ------------------------------------------------------------------ charts

    def failures(self, window: Window) -> list[FailureCount]:
        """Terminal events in the window by bucket, job type, outcome and error category."""
        sql = f"""
            SELECT bucket, job_type, type, category, COUNT(*) FROM (
              {self._terminal("NULL", "('JobCompleted', 'JobCancelled')")}
              UNION ALL
              {self._terminal(self.json_text("e.data", "error_category"), "('JobFailed')")}
            ) t GROUP BY bucket, job_type, type, category"""
        with self._connect() as conn:
            rows = conn.execute(_windowed(sql), _params(window)).all()
        return [FailureCount(int(b), t, e, c, int(n)) for b, t, e, c, n in rows]

    def _terminal(self, category: str, types: str) -> str:
        """Terminal events of ``types`` in the window with their job's type: completions and
        cancels need no event data, so PostgreSQL reads them from the indexes alone."""
        return f"""
            SELECT {self._bucket("e.occurred_at")} AS bucket, j.job_type, e.type,
                   {category} AS category
            FROM job_events e JOIN job j ON j.id = e.job_id
            WHERE e.type IN {types} AND e.occurred_at >= :since AND e.occurred_at < :until"""

    def latency(self, window: Window) -> list[Durations]:
        """Queue wait (ready → started, by start) and run time (started → outcome, by
        outcome) percentiles in each bucket of the window."""
        found: list[Durations] = []
        with self._connect() as conn:
            for kind, sql in (("wait", self._waits()), ("run", self._runs())):
                found.extend(self._percentiles(conn, kind, sql, window))
        return found

    def _waits(self) -> str:
        """A start's previous event is the one that made the job ready: JobQueued or
        JobRetryScheduled, both with ``available_at``."""
        ready = self.iso_epoch(self.json_text("r.data", "available_at"))
        return f"""
            SELECT {self._bucket("s.occurred_at")} AS bucket,
                   {self.epoch("s.occurred_at")} - {ready} AS seconds
            FROM job_events s
            JOIN job_events r ON r.job_id = s.job_id AND r.version = s.version - 1
            WHERE s.type = 'JobStarted'
              AND s.occurred_at >= :since AND s.occurred_at < :until"""

    def _runs(self) -> str:
        """An outcome's start is the job's JobStarted of the same attempt."""
        return f"""
            SELECT {self._bucket("o.occurred_at")} AS bucket,
                   {self.epoch("o.occurred_at")} - {self.epoch("s.occurred_at")} AS seconds
            FROM job_events o
            JOIN job_events s ON s.job_id = o.job_id AND s.type = 'JobStarted'
             AND {self.json_text("s.data", "attempt")} = {self.json_text("o.data", "attempt")}
            WHERE o.type IN {_in(RUN_OUTCOMES)}
              AND o.occurred_at >= :since AND o.occurred_at < :until"""

    def _percentiles(
        self, conn: Connection, kind: str, sql: str, window: Window
    ) -> list[Durations]:
        if self.postgres:
            grouped = f"""
                SELECT bucket, COUNT(*), percentile_cont(ARRAY{list(PERCENTILES)})
                       WITHIN GROUP (ORDER BY seconds)
                FROM ({sql}) d GROUP BY bucket"""
            rows = conn.execute(_windowed(grouped), _params(window)).all()
            return [Durations(int(b), kind, int(n), *map(float, ps)) for b, n, ps in rows]
        by_bucket: dict[int, list[float]] = {}
        for bucket, seconds in conn.execute(_windowed(sql), _params(window)):
            by_bucket.setdefault(int(bucket), []).append(float(seconds))
        found = []
        for bucket, values in sorted(by_bucket.items()):
            values.sort()
            ps = (percentile(values, p) for p in PERCENTILES)
            found.append(Durations(bucket, kind, len(values), *ps))
        return found

    # ------------------------------------------------------------------ dialects

    def epoch(self, column: str) -> str:
        """Seconds since 1970 of a stored time (SQLite keeps naive UTC text)."""
        if self.postgres:
            return f"CAST(EXTRACT(EPOCH FROM {column}) AS DOUBLE PRECISION)"
        return f"((julianday({column}) - 2440587.5) * 86400.0)"

    def iso_epoch(self, text_sql: str) -> str:
        """Seconds since 1970 of an ISO 8601 text inside event data."""
        if self.postgres:
            return f"CAST(EXTRACT(EPOCH FROM CAST({text_sql} AS TIMESTAMPTZ)) AS DOUBLE PRECISION)"
        return f"((julianday({text_sql}) - 2440587.5) * 86400.0)"

    def json_text(self, column: str, key: str) -> str:
        if self.postgres:
            return f"({column} ->> '{key}')"
        return f"json_extract({column}, '$.{key}')"

    def _bucket(self, column: str) -> str:
        """The bucket index of a time: whole buckets of ``:width`` seconds from ``:origin``."""
        offset = f"({self.epoch(column)} - :origin) / :width"
        return (
            f"CAST(FLOOR({offset}) AS INTEGER)" if self.postgres else f"CAST({offset} AS INTEGER)"
        )


def _jobs_query(where: JobFilter) -> Select[Any]:
    newest_first = (job.c.created_at.desc(), job.c.id.desc())
    query = select(*ROW_COLUMNS).order_by(*newest_first).limit(where.limit)
    for column, value in (
        (job.c.status, where.status),
        (job.c.job_type, where.job_type),
        (job.c.queue, where.queue),
        (job.c.error_code, where.error_code),
    ):
        if value is not None:
            query = query.where(column == value)
    if where.since is not None:
        query = query.where(job.c.created_at >= where.since)
    if where.until is not None:
        query = query.where(job.c.created_at < where.until)
    if where.before is not None:
        moment, last_id = where.before
        cursor = tuple_(
            bindparam("before_at", moment, type_=UtcDateTime()), bindparam("before_id", last_id)
        )
        query = query.where(tuple_(job.c.created_at, job.c.id) < cursor)
    return query


def _in(values: Sequence[str]) -> str:
    """A constant list of event types (ours, never user input) for ``IN``."""
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def _windowed(sql: str) -> Any:
    return text(sql).bindparams(
        bindparam("since", type_=UtcDateTime()), bindparam("until", type_=UtcDateTime())
    )


def _params(window: Window) -> dict[str, Any]:
    return {
        "since": window.since,
        "until": window.until,
        "origin": window.since.timestamp(),
        "width": float(window.width),
    }
