"""The event store on SQLAlchemy Core, for SQLite and PostgreSQL.

An append writes the job's row in the `job` projection and the events in one
transaction. The row update doubles as the optimistic concurrency check
(``WHERE version = expected``); the unique ``(job_id, version)`` constraint backs it up.

Gap-free reading: positions are handed out under a lock held until commit (on PostgreSQL
a transaction-scoped advisory lock, on SQLite the database write lock), so positions
become visible in the order they were assigned and "everything after position P" never
skips an event that commits later. See docs/architecture.md.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    RowMapping,
    String,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.dml import Update

from adapters import pg_writes
from adapters.database import WRITE, is_postgres, translated_errors
from adapters.schema import job, job_events, job_lease
from domain.errors import ConcurrencyConflict, DuplicateIdempotencyKey, InvalidCommand
from domain.events import Event, JobStarted, event_from_record
from domain.lifecycle import status_after
from domain.ports import Append, EventStore
from domain.status import JobStatus
from projections.job_table import assignments, fold

log = logging.getLogger(__name__)

PROCESSING = JobStatus.PROCESSING
APPEND_LOCK_KEY = 0x6A6F6274  # "jobt": the advisory lock that orders positions

_EVENT_COLUMNS = (
    job_events.c.position,
    job_events.c.event_id,
    job_events.c.job_id,
    job_events.c.version,
    job_events.c.type,
    job_events.c.data,
    job_events.c["metadata"],
    job_events.c.occurred_at,
    job_events.c.prev_hash,
    job_events.c.hash,
)

# Statements on the hot path are built once: building one costs more than running it.


def _ids_in(column: Any, postgres: bool) -> Any:
    """``column IN (:ids)``; on PostgreSQL ``= ANY(:ids)``, one array parameter, so the
    statement's text does not change with the number of ids and is prepared once."""
    if postgres:
        return column == any_(bindparam("ids", type_=postgresql.ARRAY(String)))
    return column.in_(bindparam("ids", expanding=True))


_BACKENDS = (False, True)  # is PostgreSQL
_LOAD_MANY = {
    pg: select(*_EVENT_COLUMNS)
    .where(_ids_in(job_events.c.job_id, pg))
    .order_by(job_events.c.job_id, job_events.c.version)
    for pg in _BACKENDS
}
_LOCK_ROWS = select(job.c.id).where(_ids_in(job.c.id, True)).order_by(job.c.id).with_for_update()
_DELETE_LEASES = {pg: delete(job_lease).where(_ids_in(job_lease.c.job_id, pg)) for pg in _BACKENDS}
_INSERT_LEASES = insert(job_lease)
_INSERT_EVENTS = insert(job_events)
_APPEND_LOCK = select(func.pg_advisory_xact_lock(APPEND_LOCK_KEY))


class SqlEventStore(EventStore):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ------------------------------------------------------------------ writes

    def append_batch(self, appends: Sequence[Append]) -> None:
        with (
            translated_errors(),
            self.engine.connect().execution_options(**WRITE) as conn,
            conn.begin(),
        ):
            write_appends(conn, appends)

    # ------------------------------------------------------------------ reads

    def load(self, job_id: str) -> list[Event]:
        query = (
            select(*_EVENT_COLUMNS)
            .where(job_events.c.job_id == job_id)
            .order_by(job_events.c.version)
        )
        with translated_errors(), self.engine.connect() as conn:
            return [to_event(row) for row in conn.execute(query).mappings()]

    def load_many(self, job_ids: Collection[str]) -> dict[str, list[Event]]:
        with translated_errors(), self.engine.connect() as conn:
            return load_many(conn, job_ids)

    def read_after(self, position: int, limit: int = 1000) -> list[Event]:
        query = (
            select(*_EVENT_COLUMNS)
            .where(job_events.c.position > position)
            .order_by(job_events.c.position)
            .limit(limit)
        )
        with translated_errors(), self.engine.connect() as conn:
            return [to_event(row) for row in conn.execute(query).mappings()]

    def stream_by_job(self, conn: Connection) -> Iterator[Event]:
        """Every event, grouped by job in version order, streamed (for rebuilds)."""
        query = (
            select(*_EVENT_COLUMNS)
            .order_by(job_events.c.job_id, job_events.c.version)
            .execution_options(stream_results=True, yield_per=5000)
        )
        result = conn.execute(query)
        for row in result.mappings():
            yield to_event(row)


def write_appends(conn: Connection, appends: Sequence[Append]) -> None:
    """Several jobs' appends inside ``conn``'s transaction: rows, leases, then events."""
    appends = [a for a in appends if a.events]
    if not appends:
        return
    for item in appends:
        _check_append(item)
    _insert_new_rows(conn, [a.events for a in appends if a.expected_version == 0])
    _update_rows(conn, [a for a in appends if a.expected_version])
    _sync_leases(conn, [a.events[-1] for a in appends])
    _insert_events(conn, [e for a in appends for e in a.events])


def load_many(conn: Connection, job_ids: Collection[str]) -> dict[str, list[Event]]:
    """Several jobs' events in version order, by job id, in one query."""
    histories: dict[str, list[Event]] = {}
    if job_ids:
        for row in conn.execute(_LOAD_MANY[is_postgres(conn)], {"ids": list(job_ids)}).mappings():
            histories.setdefault(row["job_id"], []).append(to_event(row))
    return histories


def lock_appends(conn: Connection) -> None:
    """Take the lock that orders positions, until ``conn``'s transaction ends."""
    if is_postgres(conn):
        conn.execute(_APPEND_LOCK)


def to_event(row: RowMapping) -> Event:
    return event_from_record(
        type=row["type"],
        data=row["data"],
        metadata=row["metadata"],
        job_id=row["job_id"],
        version=row["version"],
        event_id=row["event_id"],
        occurred_at=row["occurred_at"],
        prev_hash=row["prev_hash"],
        hash=row["hash"],
        position=row["position"],
    )


def _check_append(item: Append) -> None:
    first = item.expected_version + 1
    if {e.job_id for e in item.events} != {item.events[0].job_id} or [
        e.version for e in item.events
    ] != list(range(first, first + len(item.events))):
        raise InvalidCommand(reason="an append takes one job's next events, in version order")


def _insert_new_rows(conn: Connection, new_jobs: list[Sequence[Event]]) -> None:
    """The `job` rows of new jobs; a reused id or idempotency key fails the whole batch."""
    if not new_jobs:
        return
    try:
        with conn.begin_nested():
            conn.execute(insert(job), [fold(events) for events in new_jobs])
    except sa_exc.IntegrityError as error:
        if "idempotency_key" in str(error.orig):
            keys = [getattr(events[0], "idempotency_key", None) for events in new_jobs]
            raise DuplicateIdempotencyKey(key=", ".join(k for k in keys if k)) from error
        raise ConcurrencyConflict(job_id=new_jobs[0][0].job_id, expected=0) from error


def _update_rows(conn: Connection, appends: Sequence[Append]) -> None:
    """Project each job's events onto its row; the version check is the optimistic lock.

    Rows that get the same columns are updated by one executemany. On PostgreSQL the rows
    are first locked in id order, so two batches over the same jobs cannot deadlock.
    """
    if not appends:
        return
    if len(appends) > 1 and is_postgres(conn):
        conn.execute(_LOCK_ROWS, {"ids": [a.events[0].job_id for a in appends]})
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for item in appends:
        changes: dict[str, Any] = {}
        for event in item.events:
            changes.update(assignments(event))
        row = {"row_id": item.events[0].job_id, "row_version": item.expected_version, **changes}
        groups.setdefault(tuple(sorted(changes)), []).append(row)
    postgres = is_postgres(conn)
    for columns, rows in groups.items():
        if postgres:
            matched = pg_writes.update_jobs(conn, columns, rows)
        else:
            matched = conn.execute(_row_update(columns), rows).rowcount
        if matched != len(rows):
            first = rows[0]
            raise ConcurrencyConflict(job_id=first["row_id"], expected=first["row_version"])


@functools.cache
def _row_update(columns: tuple[str, ...]) -> Update:
    """UPDATE job SET <columns> WHERE id = ? AND version = ?, one per column set."""
    return (
        update(job)
        .where(job.c.id == bindparam("row_id"), job.c.version == bindparam("row_version"))
        .values({column: bindparam(column) for column in columns})
    )


def _sync_leases(conn: Connection, last_events: Sequence[Event]) -> None:
    """A `JobStarted` creates the attempt's lease; leaving ``processing`` removes it."""
    started = [e for e in last_events if isinstance(e, JobStarted)]
    left = [e.job_id for e in last_events if status_after(e.trigger) not in (None, PROCESSING)]
    gone = left + [e.job_id for e in started]
    if gone:
        conn.execute(_DELETE_LEASES[is_postgres(conn)], {"ids": gone})
    if started:
        rows = [
            {
                "job_id": e.job_id,
                "attempt": e.attempt,
                "worker_id": e.worker_id,
                "expires_at": e.lease_expires_at,
            }
            for e in started
        ]
        if is_postgres(conn):
            pg_writes.insert_leases(conn, rows)
        else:
            conn.execute(_INSERT_LEASES, rows)


def _insert_events(conn: Connection, events: Sequence[Event]) -> None:
    """Insert under the append lock, taken as late as possible (it is held until commit)."""
    lock_appends(conn)
    try:
        if is_postgres(conn):
            pg_writes.insert_events(conn, events)
        else:
            conn.execute(_INSERT_EVENTS, [_event_row(e) for e in events])
    except sa_exc.IntegrityError as error:
        first = events[0]
        raise ConcurrencyConflict(job_id=first.job_id, expected=first.version - 1) from error


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
