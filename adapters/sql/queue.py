"""Claims, lease renewals and expired leases on SQL (the `JobQueue` port).

PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``: claimers never wait for each other
and never take the same job. SQLite has a single writer, so its claims are serialised.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import datetime

from jobtrail.adapters.sql.appends import write_appends
from jobtrail.adapters.sql.engine import WRITE, is_postgres
from jobtrail.adapters.sql.errors import translated_errors
from jobtrail.adapters.sql.schema import job, job_lease
from jobtrail.adapters.sql.store import load_many
from jobtrail.domain.errors import CommandRejected
from jobtrail.domain.job import Job, Outcome
from jobtrail.domain.ports import Append, Clock, JobQueue, Lease
from jobtrail.domain.status import JobStatus
from sqlalchemy import Connection, Engine, bindparam, func, select, update

log = logging.getLogger(__name__)


_CLAIM = (
    select(job.c.id)
    .where(job.c.status == JobStatus.QUEUED.value, job.c.available_at <= bindparam("now"))
    .order_by(job.c.priority.desc(), job.c.available_at, job.c.id)
    .limit(bindparam("limit"))
)
_CLAIM_TYPES = _CLAIM.where(job.c.job_type.in_(bindparam("types", expanding=True)))


class SqlJobQueue(JobQueue):
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self._held = threading.local()

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """On PostgreSQL, keep this thread's connection from one call to the next.

        Taking a connection from the pool pings the server first (a restarted server
        then costs no failed command), a round trip on every turn of a busy worker. A
        held connection was pinged when taken; after any error it is dropped and the
        next call takes (and pings) a fresh one, so a lost connection costs one turn,
        which the worker retries.
        """
        if not is_postgres(self.engine):
            yield
            return
        self._held.active = True
        try:
            yield
        finally:
            self._held.active = False
            self._drop_held()

    @contextlib.contextmanager
    def _transaction(self, write: bool = True) -> Iterator[Connection]:
        """A connection in a transaction: the held one (see `holding`) or a pooled one."""
        with translated_errors():
            if not getattr(self._held, "active", False):
                connection = self.engine.connect()
                if write:
                    connection = connection.execution_options(**WRITE)
                with connection as conn, conn.begin():
                    yield conn
                return
            held: Connection | None = getattr(self._held, "conn", None)
            if held is None:
                held = self._held.conn = self.engine.connect()
            try:
                with held.begin():
                    yield held
            except BaseException:
                self._drop_held()
                raise

    def _drop_held(self) -> None:
        conn = self._held.__dict__.pop("conn", None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def claim(
        self,
        limit: int,
        job_types: Collection[str] | None,
        command: Callable[[Job], Outcome],
        also_append: Sequence[Append] = (),
    ) -> list[Job]:
        if limit <= 0 and not also_append:
            return []
        with self._transaction() as conn:
            claimed = self._take(conn, limit, job_types, command) if limit > 0 else []
            write_appends(
                conn,
                [*also_append, *(Append(j.pending, j.version - len(j.pending)) for j in claimed)],
            )
        return claimed

    def _take(
        self,
        conn: Connection,
        limit: int,
        job_types: Collection[str] | None,
        command: Callable[[Job], Outcome],
    ) -> list[Job]:
        """Lock the next available jobs and run the claim command on each."""
        query = _CLAIM if job_types is None else _CLAIM_TYPES
        if is_postgres(conn):
            query = query.with_for_update(skip_locked=True)
        params = {"now": self.clock.now(), "limit": limit, "types": list(job_types or ())}
        ids = list(conn.execute(query, params).scalars())
        histories = load_many(conn, ids)
        claimed: list[Job] = []
        for job_id in ids:  # in claim order (priority, available_at, id): run in that order
            candidate = Job.from_history(job_id, histories.get(job_id, []))
            try:
                command(candidate)
            except CommandRejected as error:
                log.warning("could not claim job %s: %s", job_id, error)
                continue
            if candidate.pending:
                claimed.append(candidate)
        return claimed

    def renew(self, worker_id: str, leases: Collection[Lease], until: datetime) -> set[str]:
        if not leases:
            return set()
        renewal = (
            update(job_lease)
            .where(
                job_lease.c.job_id == bindparam("lease_job_id"),
                job_lease.c.attempt == bindparam("lease_attempt"),
                job_lease.c.worker_id == worker_id,
            )
            .values(expires_at=until)
        )
        held_query = select(job_lease.c.job_id, job_lease.c.attempt).where(
            job_lease.c.job_id.in_([lease.job_id for lease in leases]),
            job_lease.c.worker_id == worker_id,
        )
        with self._transaction() as conn:
            conn.execute(
                renewal,
                [{"lease_job_id": x.job_id, "lease_attempt": x.attempt} for x in leases],
            )
            held = {Lease(job_id, attempt) for job_id, attempt in conn.execute(held_query)}
        return {lease.job_id for lease in leases if lease in held}

    def next_available_at(self, job_types: Collection[str] | None) -> datetime | None:
        query = select(func.min(job.c.available_at)).where(job.c.status == JobStatus.QUEUED.value)
        if job_types is not None:
            query = query.where(job.c.job_type.in_(list(job_types)))
        with self._transaction(write=False) as conn:
            due: datetime | None = conn.execute(query).scalar()
            return due

    def expired(self, now: datetime, limit: int = 100) -> list[Lease]:
        query = (
            select(job_lease.c.job_id, job_lease.c.attempt)
            .where(job_lease.c.expires_at < now)
            .order_by(job_lease.c.expires_at)
            .limit(limit)
        )
        with self._transaction(write=False) as conn:
            return [Lease(job_id, attempt) for job_id, attempt in conn.execute(query)]
