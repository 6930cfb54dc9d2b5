"""The log after a position, as Kafka records, read straight from the stored JSON text.

The relay's read path: data and metadata are selected as text and spliced into the envelope
(`kafka_codec.encode_fields`), so publishing an event never parses and re-serialises it.
Positions are gap-free in commit order (see sql_store), so "after P" misses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, Text, bindparam, cast, select

from adapters.database import translated_errors
from adapters.kafka_codec import Record, encode_fields
from adapters.schema import job_events
from domain.events import utc_iso

E = job_events.c

_AFTER = (
    select(
        E.position,
        E.event_id,
        E.job_id,
        E.version,
        E.type,
        E.schema_version,
        E.occurred_at,
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

    def records_after(self, position: int, limit: int) -> list[LogRecord]:
        """Up to `limit` records of the events after `position`, in position order."""
        with translated_errors(), self.engine.connect() as conn:
            rows = conn.execute(_AFTER, {"after": position, "limit": limit}).all()
        return [LogRecord(row[0], _record(*row)) for row in rows]


def _record(
    position: int,
    event_id: str,
    job_id: str,
    version: int,
    type: str,
    schema_version: int,
    occurred_at: datetime,
    data: str,
    metadata: str,
    prev_hash: str,
    hash: str,
) -> Record:
    return encode_fields(
        position,
        event_id,
        job_id,
        version,
        type,
        schema_version,
        utc_iso(occurred_at),
        data,
        metadata,
        prev_hash,
        hash,
    )
