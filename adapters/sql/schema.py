"""The tables, in SQLAlchemy Core; one schema for SQLite and PostgreSQL.

Migrations (``adapters/sql/migrations``) create them; this module is what the code queries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    func,
)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on both backends.

    SQLite has no time zones: values are stored as naive UTC and read back as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class JsonDocument(TypeDecorator[Any]):
    """JSON on SQLite, JSONB on PostgreSQL.

    A decorator rather than ``JSON().with_variant(JSONB(), …)`` so that the PostgreSQL
    dialect (and the asyncio it imports) loads only when a PostgreSQL database is used: a
    `jobtrail submit` on SQLite stays quick.
    """

    impl = JSON
    cache_ok = True

    def __init__(self, none_as_null: bool = False) -> None:
        super().__init__(none_as_null=none_as_null)
        self.none_as_null = none_as_null

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB(none_as_null=self.none_as_null))
        return dialect.type_descriptor(JSON(none_as_null=self.none_as_null))


def json_type(none_as_null: bool = False) -> Any:
    return JsonDocument(none_as_null=none_as_null)


Position = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

job_events = Table(
    "job_events",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("event_id", String(36), nullable=False, unique=True),
    Column("job_id", String(36), nullable=False),
    Column("version", Integer, nullable=False),
    Column("type", String(64), nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("data", json_type(), nullable=False),
    Column("metadata", json_type(), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False, server_default=func.current_timestamp()),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("job_id", "version", name="job_events_job_id_version_key"),
    sqlite_autoincrement=True,
)

APPENDED_EVENT_COLUMNS = tuple(
    c.name for c in job_events.c if c.name not in ("position", "recorded_at")
)
"""The columns an append writes; the database fills `position` and `recorded_at`."""

job = Table(
    "job",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("job_type", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("payload", json_type(none_as_null=True)),
    Column("result", json_type(none_as_null=True)),
    Column("error_type", String(200)),
    Column("error_code", String(100)),
    Column("error_message", Text),
    Column("error_category", String(16)),
    Column("progress", Integer, nullable=False),
    Column("worker_id", String(200)),
    Column("idempotency_key", String(200)),
    Column("created_at", UtcDateTime, nullable=False),
    Column("available_at", UtcDateTime, nullable=False),
    Column("started_at", UtcDateTime),
    Column("completed_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("version", Integer, nullable=False),
    Column("queue", String(200), nullable=False, server_default="default"),
    Column("concurrency_key", String(200)),
    Column("retry_of", String(36)),
    Column("lease_expires_at", UtcDateTime),
    Index("job_idempotency_key", "idempotency_key", unique=True),
    # ``job_retry_of`` and ``job_queue``, partial like the claim index, are created by
    # migration 0007 alone.
    # The claim index, partial on `status = 'queued'`, is created by migration 0003 alone:
    # declared here, its dialect options would load the PostgreSQL dialect on SQLite too.
    Index("job_type_status", "job_type", "status"),
    # ``job_completed_at``, partial on finished jobs (`stats`' window), is created by
    # migration 0014 alone.
    # On PostgreSQL the primary key also carries job_type (migration 0013: PRIMARY KEY (id)
    # INCLUDE (job_type)) and replaces 0009's job_id_type, which SQLite keeps.
)

LEASE_COLUMN = "lease_expires_at"
"""Until when the worker in ``worker_id`` holds a running job (migration 0011): set by the
`JobStarted` that began the attempt, moved on by heartbeats (which write no events), cleared
when the job leaves ``processing``. Coordination between workers and the reaper, not a
fact: it is outside the projection (`jobtrail.projections.job_table.COLUMNS`), so a rebuilt
table keeps the live leases and replay does not compare them."""

ROW_COLUMNS = tuple(c for c in job.c if c.name != LEASE_COLUMN)
"""A job's row as readers see it: the projection's columns, without the lease."""

relay_position = Table(
    "relay_position",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("position", Position, nullable=False),
    Column("owner", String(200)),
    Column("lease_expires_at", UtcDateTime),
    Column("updated_at", UtcDateTime, nullable=False),
)
"""How far each relay has published (acknowledged by the broker), and who may publish now."""

job_log_seals = Table(
    "job_log_seals",
    metadata,
    Column("seal_id", Position, primary_key=True, autoincrement=True),
    Column("position", Position, nullable=False),
    Column("event_count", BigInteger, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("sealed_at", UtcDateTime, nullable=False, server_default=func.current_timestamp()),
    Column("actor", String(200), nullable=False),
    sqlite_autoincrement=True,
)
"""Checkpoints of the whole log (`jobtrail seal`): append-only, checked by `jobtrail replay`."""

job_limit = Table(
    "job_limit",
    metadata,
    Column("job_type", String(200), primary_key=True),
    Column("per_key", Boolean, primary_key=True),
    Column("max_running", Integer, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
)
"""At most ``max_running`` jobs of a type processing at once: over the whole type
(``per_key`` false) or for each of its concurrency keys (``per_key`` true)."""

job_key_cursor = Table(
    "job_key_cursor",
    metadata,
    Column("job_type", String(200), primary_key=True),
    Column("after_key", String(200), nullable=False),
)
"""The last concurrency key of a limited type whose next job a claim considered: the next
claim goes on from there, so every key's turn comes (`claim_query.key_heads`)."""

job_pause = Table(
    "job_pause",
    metadata,
    Column("kind", String(8), primary_key=True),
    Column("name", String(200), primary_key=True),
    Column("paused_at", UtcDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("reason", Text),
)
"""Queues (``kind`` 'queue') and job types (``kind`` 'type') whose jobs are not claimed."""

job_schedule = Table(
    "job_schedule",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("cron", String(200), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("job_type", String(200), nullable=False),
    Column("payload", json_type(), nullable=False),
    Column("priority", Integer, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("queue", String(200), nullable=False),
    Column("catch_up", String(8), nullable=False),
    Column("last_tick_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("actor", String(200), nullable=False),
)
"""Cron schedules, and the latest tick each has enqueued (its catch-up starts there)."""

control_log = Table(
    "control_log",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("data", json_type(), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("reason", Text),
    sqlite_autoincrement=True,
)
"""Every change to limits, pauses and schedules, with actor and reason: append-only."""

job_log_archives = Table(
    "job_log_archives",
    metadata,
    Column("archive_id", Position, primary_key=True, autoincrement=True),
    Column("seal_id", Position, nullable=False),
    Column("seal_position", Position, nullable=False),
    Column("finished_before", UtcDateTime),
    Column("file_name", String(1000), nullable=False),
    Column("file_digest", String(64), nullable=False),
    Column("file_bytes", BigInteger, nullable=False),
    Column("event_count", BigInteger, nullable=False),
    Column("job_count", BigInteger, nullable=False),
    Column("first_position", Position, nullable=False),
    Column("last_position", Position, nullable=False),
    Column("events_digest", String(64), nullable=False),
    Column("kept_count", BigInteger, nullable=False),
    Column("kept_digest", String(64), nullable=False),
    Column("archived_at", UtcDateTime, nullable=False, server_default=func.current_timestamp()),
    Column("actor", String(200), nullable=False),
    sqlite_autoincrement=True,
)
"""One row per `jobtrail archive` (migration 0012): the file it wrote (name, digest, size),
the events it moved there (count, jobs, positions, digest), the seal it is cut at, and the
events left in the log up to that seal (count and digest). Append-only."""

job_log_archive_jobs = Table(
    "job_log_archive_jobs",
    metadata,
    Column("job_id", String(36), primary_key=True),
    Column("archive_id", Position, nullable=False),
    Index("job_log_archive_jobs_archive", "archive_id"),
)
"""Which archive holds each archived job's history: what the log's DELETE guard allows, and
what `jobtrail show` names for a job no longer in the log. Append-only."""
