"""The log after a position, as Kafka records, built by the database.

The relay's read path. The database writes each event's envelope as JSON text (in
`Event.envelope()`'s layout, with the stored data and metadata as they are) and hands the
record's parts over as UTF-8 bytes, so the relay's Python work per event is making one
tuple: on a 2-core machine with a pure-Python Kafka client, every microsecond the relay
spends per event is one the producer does not get. `kafka_codec.encode(event)` builds the
same records from an `Event`; tests/integration/test_relay.py checks that both agree.
Positions are gap-free in commit order (see sql_store), so "after P" misses nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import psycopg
from jobtrail.adapters.kafka.codec import Record, record
from jobtrail.adapters.sql.engine import is_postgres
from jobtrail.adapters.sql.errors import translated_errors
from jobtrail.adapters.sql.schema import job_events
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    bindparam,
    literal_column,
    select,
)

E = job_events.c


def _value_sql(quote: str, occurred_at: str, json_text: str) -> str:
    """The envelope's JSON text, built by the database in `Event.envelope()`'s layout.

    `quote` makes a JSON string literal of a column, `occurred_at` writes the time in
    `utc_iso`'s form, `json_text` gives a JSON column as text. Only values the database
    wrote itself go in unquoted (integers, and JSON it stored).
    """
    q = quote.format
    return (
        """'{"position":' || position"""
        f""" || ',"event_id":' || {q("event_id")} || ',"job_id":' || {q("job_id")}"""
        """ || ',"version":' || version"""
        f""" || ',"type":' || {q("type")} || ',"schema_version":' || schema_version"""
        f""" || ',"occurred_at":"' || {occurred_at} || '"'"""
        f""" || ',"data":' || {json_text.format("data")}"""
        f""" || ',"metadata":' || {json_text.format("metadata")}"""
        f""" || ',"prev_hash":' || {q("prev_hash")} || ',"hash":' || {q("hash")} || '}}'"""
    )


@dataclass(frozen=True)
class _Dialect:
    quote: str
    """A JSON string literal of a text column."""
    occurred_at: str
    """`occurred_at` in `utc_iso`'s form."""
    json_text: str
    """A JSON column as text."""
    traceparent: str
    """The metadata's ``traceparent`` as text, NULL when it has none (the record's header)."""
    as_bytes: str
    """Text as UTF-8 bytes: the record's parts arrive ready to send."""

    def select(self) -> Select[Any]:
        b = self.as_bytes.format
        value = _value_sql(self.quote, self.occurred_at, self.json_text)
        return (
            select(
                E.position,
                literal_column(b("job_id")),
                literal_column(b("type")),
                literal_column(b("CAST(schema_version AS TEXT)")),
                literal_column(b("event_id")),
                literal_column(b(f"({value})")),
                literal_column(b(self.traceparent)),
            )
            .where(E.position > bindparam("after"))
            .order_by(E.position)
            .limit(bindparam("limit"))
        )


DIALECTS = {
    "postgresql": _Dialect(
        quote="to_json({})::text",
        occurred_at=(
            """to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""
        ),
        json_text="{}::text",
        traceparent="metadata->>'traceparent'",
        as_bytes="convert_to({}, 'UTF8')",
    ),
    # SQLite holds UTC as "YYYY-MM-DD HH:MM:SS.ffffff" (see schema.UtcDateTime), JSON as text
    "sqlite": _Dialect(
        quote="json_quote({})",
        occurred_at="replace(occurred_at, ' ', 'T') || '+00:00'",
        json_text="{}",
        traceparent="json_extract(metadata, '$.traceparent')",
        as_bytes="CAST({} AS BLOB)",
    ),
}


@dataclass(frozen=True)
class LogBatch:
    """Records of consecutive events of the log, and the position of the last one."""

    records: list[Record]
    last_position: int


class SqlRecordSource:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._after = DIALECTS[engine.dialect.name].select()
        self._driver_sql = (
            str(self._after.compile(dialect=engine.dialect)) if is_postgres(engine) else None
        )

    def close(self) -> None:
        pass

    def _rows(self, conn: Connection, params: dict[str, int]) -> Sequence[Sequence[Any]]:
        """Plain tuples; on PostgreSQL straight from the driver, without SQLAlchemy's
        per-row work (a third of the read's Python time; the relay runs it for every event)."""
        if self._driver_sql is None:
            return conn.execute(self._after, params).all()
        driver: psycopg.Connection[Any] = conn.connection.driver_connection  # type: ignore[assignment]
        with driver.cursor(binary=True) as cursor:  # bytea arrives as bytes, not hex text
            return cursor.execute(self._driver_sql, params).fetchall()

    def records_after(self, position: int, limit: int) -> LogBatch:
        """Up to `limit` records of the events after `position`, in position order."""
        params = {"after": position, "limit": limit}
        with translated_errors(), self.engine.connect() as conn:
            rows = self._rows(conn, params)
        last = rows[-1][0] if rows else position
        return LogBatch([record(*row[1:]) for row in rows], last)


class PrefetchingSource:
    """Reads the next batch in a background thread while the relay sends the current one.

    The database's part of a read (and the driver's, which releases the GIL) then overlaps
    the producer's work. Only a non-empty prefetched batch is used, and only when the relay
    asks for exactly the position it was read from; anything else (a resend after a
    failure, a caught-up log) reads afresh, so a prefetch can be late but never wrong.
    """

    def __init__(self, source: SqlRecordSource) -> None:
        self.source = source
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobtrail-prefetch")
        self._pending: tuple[int, int, Future[LogBatch]] | None = None

    def records_after(self, position: int, limit: int) -> LogBatch:
        batch = self._prefetched(position, limit)
        if batch is None or not batch.records:
            batch = self.source.records_after(position, limit)
        if batch.records:
            after = batch.last_position
            future = self._executor.submit(self.source.records_after, after, limit)
            self._pending = (after, limit, future)
        return batch

    def close(self) -> None:
        self._pending = None
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _prefetched(self, position: int, limit: int) -> LogBatch | None:
        pending, self._pending = self._pending, None
        if pending is None or pending[:2] != (position, limit):
            return None
        return pending[2].result()
