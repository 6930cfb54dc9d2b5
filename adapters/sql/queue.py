"""Claims, lease renewals and expired leases on SQL (the `JobQueue` port).

PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``: claimers never wait for each other
and never take the same job. SQLite has a single writer, so its claims are serialised.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import datetime
from typing import Any

from jobtrail.adapters.sql.appends import write_appends
from jobtrail.adapters.sql.claim_query import (
    KEYS_PER_CLAIM,
    LIMITED_TYPES,
    LOCK_LIMITS,
    ClaimFilter,
    key_heads,
    limited_claim,
    unlimited_claim,
)
from jobtrail.adapters.sql.engine import WRITE, is_postgres
from jobtrail.adapters.sql.errors import translated_errors
from jobtrail.adapters.sql.schema import LEASE_COLUMN, job, job_key_cursor
from jobtrail.adapters.sql.store import load_many
from jobtrail.domain.errors import CommandRejected
from jobtrail.domain.job import Job, Outcome
from jobtrail.domain.ports import Append, Clock, JobQueue, Lease
from jobtrail.domain.status import JobStatus
from sqlalchemy import Connection, Engine, Row, bindparam, func, insert, select, update

log = logging.getLogger(__name__)

PROCESSING = JobStatus.PROCESSING.value
_RENEWAL = (
    update(job)
    .where(
        job.c.id == bindparam("lease_job_id"),
        job.c.attempt == bindparam("lease_attempt"),
        job.c.worker_id == bindparam("worker"),
        job.c.status == PROCESSING,
    )
    .values({LEASE_COLUMN: bindparam("until")})
)
"""A heartbeat: changes no indexed column, so PostgreSQL can make it a HOT update."""

LIMITED_TYPES_SECONDS = 0.5
"""How long a claimer keeps its list of the limited types before reading it again."""


class SqlJobQueue(JobQueue):
    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        self._held = threading.local()
        self._limited: tuple[float, frozenset[str]] | None = None

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
        queues: Collection[str] | None = None,
    ) -> list[Job]:
        if limit <= 0 and not also_append:
            return []
        claim_filter = ClaimFilter(job_types, queues)
        with self._transaction() as conn:
            claimed = self._take(conn, limit, claim_filter, command) if limit > 0 else []
            write_appends(
                conn,
                [*also_append, *(Append(j.pending, j.version - len(j.pending)) for j in claimed)],
            )
        return claimed

    def _take(
        self,
        conn: Connection,
        limit: int,
        claim_filter: ClaimFilter,
        command: Callable[[Job], Outcome],
    ) -> list[Job]:
        """Lock the next available jobs and run the claim command on each."""
        limited = self._limited_types(conn)
        params = {"now": self.clock.now(), "limit": limit, **claim_filter.parameters()}
        ids = self._take_limited(conn, limit, claim_filter, limited, params)
        if len(ids) < limit:
            query = unlimited_claim(claim_filter)
            if is_postgres(conn):
                query = query.with_for_update(skip_locked=True)
            params["limit"] = limit - len(ids)
            ids += conn.execute(query, params).scalars()
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

    @staticmethod
    def _take_limited(
        conn: Connection,
        limit: int,
        claim_filter: ClaimFilter,
        limited: frozenset[str],
        params: dict[str, Any],
    ) -> list[str]:
        """Lock the jobs of limited types the limits let start now (none without limits).

        The limit rows are locked first (PostgreSQL; SQLite's claims are serialised), so
        the jobs processing are counted with no other claim of these types in between.
        """
        claimable = claim_filter.limited_types(limited)
        if not claimable:
            return []
        params = {**params, "claimable": claimable}
        postgres = is_postgres(conn)
        if postgres:
            conn.execute(LOCK_LIMITS.with_for_update(), params)
        heads = [h for t in claimable for h in _next_key_heads(conn, t, claim_filter, params)]
        query = limited_claim(claim_filter, lock=postgres)
        admitted = conn.execute(query, {**params, "heads": heads}).all()
        if admitted:
            _move_cursors(conn, admitted)
        return [row.id for row in admitted]

    def _limited_types(self, conn: Connection) -> frozenset[str]:
        """The types under a limit, read at most every `LIMITED_TYPES_SECONDS`: they take
        the limited path. A stale copy is safe: the plain claim reads the limits
        and pauses in its own statement (``NOT IN``), and the limited one reads the
        limits it counts against, so a new limit or pause holds from its commit; a type
        limited since the copy waits for the next read to be claimed at all."""
        now = time.monotonic()
        cached = self._limited
        if cached is None or now - cached[0] >= LIMITED_TYPES_SECONDS:
            cached = self._limited = (now, frozenset(conn.execute(LIMITED_TYPES).scalars()))
        return cached[1]

    def renew(self, worker_id: str, leases: Collection[Lease], until: datetime) -> set[str]:
        """Move the leases this worker still holds to ``until``; returns their job ids.

        A lease lives in its job's row (`LEASE_COLUMN`): held while the row is
        ``processing`` with this worker and attempt. Rows are updated in id order, as every
        batch write locks them, so a renewal cannot deadlock with one.
        """
        if not leases:
            return set()
        ordered = sorted(leases, key=lambda lease: lease.job_id)
        with self._transaction() as conn:
            conn.execute(
                _RENEWAL,
                [
                    {"lease_job_id": x.job_id, "lease_attempt": x.attempt, "worker": worker_id}
                    | {"until": until}
                    for x in ordered
                ],
            )
            held_query = select(job.c.id, job.c.attempt).where(
                job.c.id.in_([lease.job_id for lease in ordered]),
                job.c.worker_id == worker_id,
                job.c.status == PROCESSING,
            )
            held = {Lease(job_id, attempt) for job_id, attempt in conn.execute(held_query)}
        return {lease.job_id for lease in leases if lease in held}

    def next_available_at(
        self, job_types: Collection[str] | None, queues: Collection[str] | None = None
    ) -> datetime | None:
        """The earliest ``available_at`` of the queued jobs this worker may take (paused
        queues and types left out: their jobs are not due for it)."""
        claim_filter = ClaimFilter(job_types, queues)
        with self._transaction(write=False) as conn:
            query = select(func.min(job.c.available_at)).where(
                job.c.status == JobStatus.QUEUED.value, *claim_filter.conditions()
            )
            due: datetime | None = conn.execute(query, claim_filter.parameters()).scalar()
            return due

    def expired(self, now: datetime, limit: int = 100) -> list[Lease]:
        """Running attempts whose lease ran out (read through the small `job_running`
        index: only running rows are in it)."""
        query = (
            select(job.c.id, job.c.attempt)
            .where(job.c.status == PROCESSING, job.c[LEASE_COLUMN] < now)
            .order_by(job.c[LEASE_COLUMN])
            .limit(limit)
        )
        with self._transaction(write=False) as conn:
            return [Lease(job_id, attempt) for job_id, attempt in conn.execute(query)]


def _next_key_heads(
    conn: Connection,
    job_type: str,
    claim_filter: ClaimFilter,
    params: dict[str, Any],
) -> list[str]:
    """The next jobs of the `KEYS_PER_CLAIM` keys of ``job_type`` that follow its cursor,
    going round to the first keys after the last one."""
    after = conn.execute(_CURSOR, {"cursor_type": job_type}).scalar() or ""
    query = key_heads(claim_filter)
    rows = list(conn.execute(query, {**params, "job_type": job_type, "after": after}))
    if len(rows) < KEYS_PER_CLAIM and after:
        rows += conn.execute(query, {**params, "job_type": job_type, "after": ""})
    return list(dict.fromkeys(row.head for row in rows if row.head is not None))


def _move_cursors(conn: Connection, admitted: Sequence[Row[Any]]) -> None:
    """Each type's cursor to the key of its last admitted job: the next claim of the type
    starts its round of the keys after it (`claim_query.limited_claim`)."""
    last = {row.job_type: row.concurrency_key or "" for row in admitted}
    known = set(
        conn.execute(
            select(job_key_cursor.c.job_type).where(job_key_cursor.c.job_type.in_(list(last)))
        ).scalars()
    )
    for job_type, key in last.items():
        values = {"cursor_type": job_type, "cursor_key": key}
        conn.execute(_MOVE_CURSOR if job_type in known else _NEW_CURSOR, values)


_CURSOR = select(job_key_cursor.c.after_key).where(
    job_key_cursor.c.job_type == bindparam("cursor_type")
)
_MOVE_CURSOR = (
    update(job_key_cursor)
    .where(job_key_cursor.c.job_type == bindparam("cursor_type"))
    .values(after_key=bindparam("cursor_key"))
)
_NEW_CURSOR = insert(job_key_cursor).values(
    job_type=bindparam("cursor_type"), after_key=bindparam("cursor_key")
)
