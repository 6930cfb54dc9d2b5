"""Reads of the `job` projection, and its rebuild from the log."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Iterator
from itertools import islice
from typing import Any

from jobtrail.adapters.sql.appends import lock_appends
from jobtrail.adapters.sql.engine import WRITE, is_postgres
from jobtrail.adapters.sql.errors import translated_errors
from jobtrail.adapters.sql.schema import job
from jobtrail.adapters.sql.store import SqlEventStore
from jobtrail.projections.job_table import rows_from_log
from sqlalchemy import Engine, delete, insert, select, text

log = logging.getLogger(__name__)

STATS_COLUMNS = (
    job.c.status,
    job.c.job_type,
    job.c.error_code,
    job.c.created_at,
    job.c.completed_at,
)


class JobQueries:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, job_id: str) -> dict[str, Any] | None:
        with translated_errors(), self.engine.connect() as conn:
            row = conn.execute(select(job).where(job.c.id == job_id)).mappings().first()
            return dict(row) if row else None

    def find_by_idempotency_keys(self, keys: Collection[str]) -> dict[str, str]:
        """The jobs that already hold any of these idempotency keys, by key."""
        query = select(job.c.idempotency_key, job.c.id).where(job.c.idempotency_key.in_(keys))
        with translated_errors(), self.engine.connect() as conn:
            return {key: job_id for key, job_id in conn.execute(query)}

    def list_jobs(
        self, status: str | None = None, job_type: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Newest first."""
        query = select(job).order_by(job.c.created_at.desc(), job.c.id).limit(limit)
        if status:
            query = query.where(job.c.status == status)
        if job_type:
            query = query.where(job.c.job_type == job_type)
        with translated_errors(), self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def all_rows(self) -> list[dict[str, Any]]:
        """The whole table in id order (for comparisons in audits and tests)."""
        with translated_errors(), self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(select(job).order_by(job.c.id)).mappings()]

    def stream_for_stats(self) -> Iterator[dict[str, Any]]:
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


def rebuild(engine: Engine, store: SqlEventStore, batch: int = 2000) -> int:
    """Replace the `job` table by folding the whole log; returns the number of rows.

    Runs in one transaction that holds the append lock, so no append interleaves and
    readers see either the old table or the new one.
    """
    count = 0
    with translated_errors(), engine.connect().execution_options(**WRITE) as conn, conn.begin():
        lock_appends(conn)
        if is_postgres(conn):
            conn.execute(text("TRUNCATE job"))
        else:
            conn.execute(delete(job))
        for rows in batched(rows_from_log(store.stream_by_job(conn)), batch):
            conn.execute(insert(job), rows)
            count += len(rows)
    log.info("rebuilt the job table: %d rows", count)
    return count
