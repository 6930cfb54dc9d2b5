"""The event store on SQLAlchemy Core, for SQLite and PostgreSQL: the `EventStore` port.

Reads are here; an append's writes (rows, leases, events, in one transaction) are in
`jobtrail.adapters.sql.appends`. Positions are gap-free in commit order (see there), so
`read_after` never skips an event that commits later.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from jobtrail.adapters.sql.appends import write_appends
from jobtrail.adapters.sql.engine import WRITE, is_postgres
from jobtrail.adapters.sql.errors import translated_errors
from jobtrail.adapters.sql.schema import job_events
from jobtrail.domain.events import Event, event_from_envelope
from jobtrail.domain.ports import Append, EventStore
from sqlalchemy import Connection, Engine, String, any_, bindparam, select

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
        from sqlalchemy.dialects.postgresql import ARRAY  # loads only where it is used

        return column == any_(bindparam("ids", type_=ARRAY(String)))
    return column.in_(bindparam("ids", expanding=True))


@functools.cache
def _load_many_query(postgres: bool) -> Any:
    return (
        select(*_EVENT_COLUMNS)
        .where(_ids_in(job_events.c.job_id, postgres))
        .order_by(job_events.c.job_id, job_events.c.version)
    )


class SqlEventStore(EventStore):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ------------------------------------------------------------------ writes

    def append_batch(self, appends: Sequence[Append]) -> None:
        """All of them or none (`jobtrail.adapters.sql.appends.write_appends`)."""
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
            return [event_from_envelope(row) for row in conn.execute(query).mappings()]

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
            return [event_from_envelope(row) for row in conn.execute(query).mappings()]

    def stream_by_job(self, conn: Connection) -> Iterator[Event]:
        """Every event, grouped by job in version order, streamed (for rebuilds)."""
        query = (
            select(*_EVENT_COLUMNS)
            .order_by(job_events.c.job_id, job_events.c.version)
            .execution_options(stream_results=True, yield_per=5000)
        )
        result = conn.execute(query)
        for row in result.mappings():
            yield event_from_envelope(row)


def load_many(conn: Connection, job_ids: Collection[str]) -> dict[str, list[Event]]:
    """Several jobs' events in version order, by job id, in one query."""
    histories: dict[str, list[Event]] = {}
    if job_ids:
        for row in conn.execute(
            _load_many_query(is_postgres(conn)), {"ids": list(job_ids)}
        ).mappings():
            histories.setdefault(row["job_id"], []).append(event_from_envelope(row))
    return histories
