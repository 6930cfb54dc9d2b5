"""A throwaway SQLite copy of a log read from outside the database (an export, the topic).

Loaded into tables shaped like the real ones, a file's or a topic's events are read by the
same streamed reads (`reads`) in position order and in job order, without holding them in
memory, and verified by the same code as the database's log.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobtrail.adapters.audit.checks.records import Problem, StoredEvent
from jobtrail.adapters.audit.export_format import Manifest
from jobtrail.adapters.audit.reads import FETCH, LogTables
from jobtrail.adapters.sql.schema import UtcDateTime
from jobtrail.domain.seals import Seal
from sqlalchemy import (
    JSON,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    event,
    insert,
)

staging_metadata = MetaData()
staged_events = Table(
    "job_events",
    staging_metadata,
    Column("position", Integer, nullable=False),
    Column("event_id", String, nullable=False),
    Column("job_id", String, nullable=False),
    Column("version", Integer, nullable=False),
    Column("type", String, nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("data", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("prev_hash", String, nullable=False),
    Column("hash", String, nullable=False),
    Index("staged_by_job", "job_id", "version", "position"),
    Index("staged_by_position", "position"),
)
"""A copy of `job_events` without constraints: a file or a topic may hold anything."""

staged_seals = Table(
    "job_log_seals",
    staging_metadata,
    Column("seal_id", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Column("event_count", Integer, nullable=False),
    Column("digest", String, nullable=False),
)


class Staging:
    """A throwaway SQLite file holding a file's or a topic's events, so that replay can read
    them in position order and in job order without holding them in memory."""

    def __init__(self) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="jobtrail-replay-")
        path = Path(self._directory.name) / "staging.db"
        self.engine = create_engine(f"sqlite:///{path}")
        event.listen(self.engine, "connect", _fast_sqlite)
        staging_metadata.create_all(self.engine)
        self.tables = LogTables(staged_events, staged_seals)

    def add_events(self, records: Iterable[StoredEvent]) -> None:
        with self.engine.begin() as conn:
            batch: list[dict[str, Any]] = []
            for record in records:
                batch.append(record._asdict())
                if len(batch) >= FETCH:
                    conn.execute(insert(staged_events), batch)
                    batch = []
            if batch:
                conn.execute(insert(staged_events), batch)

    def add_seals(self, seals: Iterable[Seal]) -> None:
        rows = [
            {
                "seal_id": s.seal_id,
                "position": s.position,
                "event_count": s.event_count,
                "digest": s.digest,
            }
            for s in seals
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(staged_seals), rows)

    def close(self) -> None:
        self.engine.dispose()
        self._directory.cleanup()


def _fast_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """A scratch copy: durability does not matter, speed does."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=OFF")
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


@dataclass
class Loaded:
    """A source loaded into staging: where, and what was wrong with the source itself."""

    staging: Staging
    tables: LogTables
    problems: list[Problem]
    manifest: Manifest | None = None
    archive: dict[str, Any] | None = None
    """An archive file's ``archive`` line (None: a whole export, or a topic)."""
