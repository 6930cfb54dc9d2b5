"""The append path of the SQL event store: one transaction writes events and their rows.

An append writes the job's row in the `job` projection and the events in one transaction.
The row update doubles as the optimistic concurrency check (``WHERE version = expected``);
the unique ``(job_id, version)`` constraint backs it up. A new job's row is inserted, so a
reused job id or idempotency key fails the whole batch (which key: `errors.collision`).

Gap-free reading: positions are handed out under a lock held until commit (on PostgreSQL
a transaction-scoped advisory lock, on SQLite the database write lock), so positions
become visible in the order they were assigned and "everything after position P" never
skips an event that commits later. See docs/architecture.md.

After the new rows, the writes go through `Writes`: sent one by one here on SQLite
(`_Portable`), queued and sent in one round trip on PostgreSQL
(`jobtrail.adapters.sql.pg_pipeline`, imported only there: it needs psycopg).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Protocol

from jobtrail.adapters.sql.engine import is_postgres
from jobtrail.adapters.sql.errors import Collision, collision
from jobtrail.adapters.sql.schema import job, job_events
from jobtrail.domain.errors import ConcurrencyConflict, DuplicateIdempotencyKey
from jobtrail.domain.events import Event
from jobtrail.domain.ports import Append
from jobtrail.projections.job_table import LIVE_COLUMNS, assignments, fold
from sqlalchemy import Column, Connection, bindparam, func, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.sql.dml import Update

APPEND_LOCK_KEY = 0x6A6F6274  # "jobt": the advisory lock that orders positions

# Statements on the hot path are built once: building one costs more than running it.
_INSERT_JOBS = insert(job)
_INSERT_EVENTS = insert(job_events)
_APPEND_LOCK = select(func.pg_advisory_xact_lock(APPEND_LOCK_KEY))


def write_appends(conn: Connection, appends: Sequence[Append]) -> None:
    """Several jobs' appends inside ``conn``'s transaction: rows (with leases), then events."""
    appends = [a for a in appends if a.events]
    if not appends:
        return
    for item in appends:
        item.check()
    _insert_new_rows(conn, [a.events for a in appends if a.expected_version == 0])
    writes: Writes
    if is_postgres(conn):
        from jobtrail.adapters.sql.pg_pipeline import PipelinedWrites

        writes = PipelinedWrites(conn)
    else:
        writes = _Portable(conn)
    _update_rows(writes, [a for a in appends if a.expected_version])
    # The append lock is taken as late as possible: it is held until commit.
    writes.lock_appends(APPEND_LOCK_KEY)
    events = [e for a in appends for e in a.events]
    writes.insert_events(
        events, ConcurrencyConflict(job_id=events[0].job_id, expected=events[0].version - 1)
    )
    writes.finish()


def lock_appends(conn: Connection) -> None:
    """Take the lock that orders positions, until ``conn``'s transaction ends."""
    if is_postgres(conn):
        conn.execute(_APPEND_LOCK)


class Writes(Protocol):
    """The writes of an append after its new rows: queued (PostgreSQL) or sent at once."""

    def lock_rows(self, ids: list[str]) -> None: ...
    def update_rows(
        self,
        columns: tuple[str, ...],
        rows: Sequence[dict[str, Any]],
        conflict: ConcurrencyConflict,
    ) -> None: ...
    def lock_appends(self, key: int) -> None: ...
    def insert_events(self, events: Sequence[Event], conflict: ConcurrencyConflict) -> None: ...
    def finish(self) -> None: ...


class _Portable:
    """SQLAlchemy statements, each sent at once (SQLite: the write lock is already held,
    from BEGIN IMMEDIATE to commit, so rows and positions need no lock of their own)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def lock_rows(self, ids: list[str]) -> None:
        pass

    def update_rows(
        self,
        columns: tuple[str, ...],
        rows: Sequence[dict[str, Any]],
        conflict: ConcurrencyConflict,
    ) -> None:
        if self.conn.execute(_row_update(columns), rows).rowcount != len(rows):
            raise conflict

    def lock_appends(self, key: int) -> None:
        pass

    def insert_events(self, events: Sequence[Event], conflict: ConcurrencyConflict) -> None:
        try:
            self.conn.execute(_INSERT_EVENTS, [_event_row(e) for e in events])
        except sa_exc.IntegrityError as error:
            if collision(error, job_events.name) is Collision.EVENT:
                raise conflict from error
            raise

    def finish(self) -> None:
        pass


def _insert_new_rows(conn: Connection, new_jobs: list[Sequence[Event]]) -> None:
    """The `job` rows of new jobs; a reused id or idempotency key fails the whole batch.

    PostgreSQL inserts the batch in one statement that skips the rows that collide (`ON
    CONFLICT DO NOTHING`) and returns the ids it inserted: any row missing is named in the
    error, and the caller's transaction rolls back. SQLite inserts in a savepoint, so after
    a collision the transaction can still ask which ids or keys were taken.
    """
    if not new_jobs:
        return
    rows = [fold(events) for events in new_jobs]
    if is_postgres(conn):
        from jobtrail.adapters.sql.pg_pipeline import insert_new_rows

        skipped = insert_new_rows(conn, rows)
        if skipped:
            raise _collided(conn, skipped)
        return
    try:
        with conn.begin_nested():
            conn.execute(_INSERT_JOBS, rows)
    except sa_exc.IntegrityError as error:
        found = collision(error, job.name)
        if found is Collision.IDEMPOTENCY_KEY:
            keys = [row["idempotency_key"] for row in rows if row["idempotency_key"] is not None]
            taken = _taken(conn, job.c.idempotency_key, keys)
            raise DuplicateIdempotencyKey(key=", ".join(taken)) from error
        if found is Collision.JOB_ID:
            taken = _taken(conn, job.c.id, [row["id"] for row in rows])
            raise ConcurrencyConflict(job_id=", ".join(taken), expected=0) from error
        raise


def _collided(conn: Connection, skipped: list[dict[str, Any]]) -> Exception:
    """The error for rows an insert skipped: a taken idempotency key names the key(s),
    else the job id(s) were taken."""
    keys = [row["idempotency_key"] for row in skipped if row["idempotency_key"] is not None]
    key = job.c.idempotency_key
    stored = set(conn.execute(select(key).where(key.in_(keys))).scalars()) if keys else set()
    if stored:
        return DuplicateIdempotencyKey(key=", ".join(k for k in dict.fromkeys(keys) if k in stored))
    ids = dict.fromkeys(row["id"] for row in skipped)
    return ConcurrencyConflict(job_id=", ".join(ids), expected=0)


def _taken(conn: Connection, column: Column[Any], values: list[str]) -> list[str]:
    """The values of ``values`` that ``column`` already holds; if none, those given twice."""
    stored = set(conn.execute(select(column).where(column.in_(values))).scalars())
    twice = {value for value in values if values.count(value) > 1}
    return [value for value in dict.fromkeys(values) if value in (stored or twice)]


def _update_rows(writes: Writes, appends: Sequence[Append]) -> None:
    """Project each job's events onto its row; the version check is the optimistic lock.

    The live row also takes the lease the events set or clear (`LIVE_COLUMNS`): a
    `JobStarted` writes its attempt's expiry, leaving ``processing`` clears it.

        Rows that get the same columns are updated by one statement. The rows are first
        locked in id order, so two batches over the same jobs cannot deadlock.
    """
    if not appends:
        return
    if len(appends) > 1:
        writes.lock_rows([a.events[0].job_id for a in appends])
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for item in appends:
        changes: dict[str, Any] = {}
        for event in item.events:
            changes.update(assignments(event, LIVE_COLUMNS))
        row = {"row_id": item.events[0].job_id, "row_version": item.expected_version, **changes}
        groups.setdefault(tuple(sorted(changes)), []).append(row)
    for columns, rows in groups.items():
        first = rows[0]
        conflict = ConcurrencyConflict(job_id=first["row_id"], expected=first["row_version"])
        writes.update_rows(columns, rows, conflict)


@functools.cache
def _row_update(columns: tuple[str, ...]) -> Update:
    """UPDATE job SET <columns> WHERE id = ? AND version = ?, one per column set."""
    return (
        update(job)
        .where(job.c.id == bindparam("row_id"), job.c.version == bindparam("row_version"))
        .values({column: bindparam(column) for column in columns})
    )


def _event_row(e: Event) -> dict[str, Any]:
    return {
        "event_id": e.event_id,
        "job_id": e.job_id,
        "version": e.version,
        "type": e.type,
        "schema_version": e.schema_version,
        "data": e.data(),
        "metadata": e.metadata(),
        "occurred_at": e.occurred_at,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    }
