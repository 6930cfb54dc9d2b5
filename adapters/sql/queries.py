"""Reads of the `job` projection, and its rebuild from the log."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Iterator
from itertools import islice
from typing import Any

from jobtrail.adapters.sql.appends import lock_appends
from jobtrail.adapters.sql.engine import WRITE, is_postgres
from jobtrail.adapters.sql.errors import translated_errors
from jobtrail.adapters.sql.schema import LEASE_COLUMN, ROW_COLUMNS, job
from jobtrail.adapters.sql.store import SqlEventStore
from jobtrail.domain.lineage import RetryFilter
from jobtrail.domain.status import TERMINAL_STATUSES, JobStatus
from jobtrail.projections.job_table import rows_from_log
from sqlalchemy import Engine, bindparam, delete, exists, func, insert, select, text, update

log = logging.getLogger(__name__)

RETRY_COLUMNS = (
    job.c.id,
    job.c.job_type,
    job.c.status,
    job.c.error_code,
    job.c.completed_at,
)
"""What a bulk retry shows of each job it takes (the dry run's lines)."""
STATS_COLUMNS = (
    job.c.status,
    job.c.job_type,
    job.c.queue,
    job.c.error_code,
    job.c.created_at,
    job.c.completed_at,
)


class JobQueries:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, job_id: str) -> dict[str, Any] | None:
        with translated_errors(), self.engine.connect() as conn:
            row = conn.execute(select(*ROW_COLUMNS).where(job.c.id == job_id)).mappings().first()
            return dict(row) if row else None

    def find_by_idempotency_keys(self, keys: Collection[str]) -> dict[str, str]:
        """The jobs that already hold any of these idempotency keys, by key."""
        query = select(job.c.idempotency_key, job.c.id).where(job.c.idempotency_key.in_(keys))
        with translated_errors(), self.engine.connect() as conn:
            return {key: job_id for key, job_id in conn.execute(query)}

    def list_jobs(
        self,
        status: str | None = None,
        job_type: str | None = None,
        limit: int = 50,
        queue: str | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first."""
        query = select(*ROW_COLUMNS).order_by(job.c.created_at.desc(), job.c.id).limit(limit)
        if status:
            query = query.where(job.c.status == status)
        if job_type:
            query = query.where(job.c.job_type == job_type)
        if queue:
            query = query.where(job.c.queue == queue)
        with translated_errors(), self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def rows(self, job_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """These jobs' rows, by id (unknown ids left out)."""
        query = select(*ROW_COLUMNS).where(job.c.id.in_(list(job_ids)))
        with translated_errors(), self.engine.connect() as conn:
            return {row["id"]: dict(row) for row in conn.execute(query).mappings()}

    def retries_of(self, job_id: str) -> list[dict[str, Any]]:
        """The jobs that retry this one (id, status, created_at), the oldest first."""
        query = (
            select(job.c.id, job.c.status, job.c.created_at)
            .where(job.c.retry_of == job_id)
            .order_by(job.c.created_at, job.c.id)
        )
        with translated_errors(), self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def finished_retries(self, job_ids: Collection[str]) -> dict[str, int]:
        """How many finished retries each of these jobs has (`jobtrail.domain.lineage`)."""
        query = (
            select(job.c.retry_of, func.count())
            .where(job.c.retry_of.in_(list(job_ids)), job.c.status.in_(sorted(TERMINAL_STATUSES)))
            .group_by(job.c.retry_of)
        )
        with translated_errors(), self.engine.connect() as conn:
            return {original: count for original, count in conn.execute(query)}

    def to_retry(self, where: RetryFilter) -> list[dict[str, Any]]:
        """The finished jobs a bulk retry takes (`RetryFilter`), the earliest finished first;
        jobs that already have a retry are left out."""
        retry = job.alias("retry")
        query = (
            select(*RETRY_COLUMNS)
            .where(job.c.status == where.status, job.c.completed_at >= where.since)
            .where(~exists().where(retry.c.retry_of == job.c.id))
            .order_by(job.c.completed_at, job.c.id)
            .limit(where.limit)
        )
        if where.until is not None:
            query = query.where(job.c.completed_at < where.until)
        if where.job_type is not None:
            query = query.where(job.c.job_type == where.job_type)
        if where.error_code is not None:
            query = query.where(job.c.error_code == where.error_code)
        with translated_errors(), self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def all_rows(self) -> list[dict[str, Any]]:
        """The whole table in id order (for comparisons in audits and tests)."""
        with translated_errors(), self.engine.connect() as conn:
            rows = conn.execute(select(*ROW_COLUMNS).order_by(job.c.id)).mappings()
            return [dict(r) for r in rows]

    def stream_for_stats(self) -> Iterator[dict[str, Any]]:
        """Every row, for `compute`: the reference `stats_query.read_stats` is tested against."""
        with translated_errors(), self.engine.connect() as conn:
            result = conn.execute(
                select(*STATS_COLUMNS).execution_options(stream_results=True, yield_per=5000)
            )
            for row in result.mappings():
                yield dict(row)


def batched(items: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    """Lists of up to ``size`` items (itertools.batched arrives in Python 3.12)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


_HELD = job.c[LEASE_COLUMN].is_not(None)
_KEEP_LEASE = (
    update(job)
    .where(job.c.id == bindparam("lease_id"), job.c.status == JobStatus.PROCESSING.value)
    .values({LEASE_COLUMN: bindparam("lease")})
)


def rebuild(engine: Engine, store: SqlEventStore, batch: int = 2000) -> int:
    """Replace the `job` table by folding the whole log; returns the number of rows.

    Runs in one transaction that holds the append lock, so no append interleaves and
    readers see either the old table or the new one. The leases of running jobs are not in
    the log (heartbeats move them): they are carried over to the rebuilt rows.
    """
    count = 0
    with translated_errors(), engine.connect().execution_options(**WRITE) as conn, conn.begin():
        lock_appends(conn)
        leases = [
            {"lease_id": job_id, "lease": until}
            for job_id, until in conn.execute(select(job.c.id, job.c[LEASE_COLUMN]).where(_HELD))
        ]
        if is_postgres(conn):
            conn.execute(text("TRUNCATE job"))
        else:
            conn.execute(delete(job))
        for rows in batched(rows_from_log(store.stream_by_job(conn)), batch):
            conn.execute(insert(job), rows)
            count += len(rows)
        if leases:
            conn.execute(_KEEP_LEASE, leases)
    log.info("rebuilt the job table: %d rows", count)
    return count
