"""The log after a position, as Kafka records, read straight from the stored JSON text.

The relay's read path: data and metadata are selected as text and spliced into the envelope
(`kafka_codec.encode_fields`), so publishing an event never parses and re-serialises it.
Positions are gap-free in commit order (see sql_store), so "after P" misses nothing.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Engine, Select, Text, bindparam, cast, literal_column, select

from adapters.database import translated_errors
from adapters.kafka_codec import Record, encode_fields
from adapters.schema import job_events

E = job_events.c

OCCURRED_AT_TEXT: dict[str, ColumnElement[str]] = {
    # `utc_iso`'s form, written by the database so no row needs a datetime in Python
    "postgresql": literal_column(
        """to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""
    ),
    # SQLite holds UTC as "YYYY-MM-DD HH:MM:SS.ffffff" (see schema.UtcDateTime)
    "sqlite": literal_column("replace(occurred_at, ' ', 'T') || '+00:00'"),
}


def _after(dialect: str) -> Select[Any]:
    return (
        select(
            E.position,
            E.event_id,
            E.job_id,
            E.version,
            E.type,
            E.schema_version,
            OCCURRED_AT_TEXT[dialect],
            cast(E.data, Text),
            cast(E["metadata"], Text),
            E.prev_hash,
            E.hash,
        )
        .where(E.position > bindparam("after"))
        .order_by(E.position)
        .limit(bindparam("limit"))
    )


@dataclass(frozen=True, slots=True)
class LogRecord:
    position: int
    record: Record


class SqlRecordSource:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._after = _after(engine.dialect.name)

    def close(self) -> None:
        pass

    def records_after(self, position: int, limit: int) -> list[LogRecord]:
        """Up to `limit` records of the events after `position`, in position order."""
        with translated_errors(), self.engine.connect() as conn:
            rows = conn.execute(self._after, {"after": position, "limit": limit}).all()
        return [LogRecord(row[0], encode_fields(*row)) for row in rows]


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
        self._pending: tuple[int, int, Future[list[LogRecord]]] | None = None

    def records_after(self, position: int, limit: int) -> list[LogRecord]:
        batch = self._prefetched(position, limit)
        if not batch:
            batch = self.source.records_after(position, limit)
        if batch:
            after = batch[-1].position
            future = self._executor.submit(self.source.records_after, after, limit)
            self._pending = (after, limit, future)
        return batch

    def close(self) -> None:
        self._pending = None
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _prefetched(self, position: int, limit: int) -> list[LogRecord]:
        pending, self._pending = self._pending, None
        if pending is None or pending[:2] != (position, limit):
            return []
        return pending[2].result()
