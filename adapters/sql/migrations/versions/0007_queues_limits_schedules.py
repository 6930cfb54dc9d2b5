"""Queues, concurrency limits, pauses, cron schedules, retry lineage, and the control log.

- `job` gains ``queue`` (``'default'`` for every job queued before), ``concurrency_key`` and
  ``retry_of``, all set by the job's `JobQueued` event (the projection, like every column).
- `job_limit`: at most ``max_running`` jobs of a type in ``processing`` at once, over the
  whole type (``per_key`` false) or for each concurrency key of it (``per_key`` true).
  `job_key_cursor` is where each limited type's round of its keys has got to (fairness),
  and the index ``job_queued_keys`` finds each key's next job.
- `job_pause`: queues and types whose jobs are not claimed while a row exists.
- `job_schedule`: cron schedules and the latest tick each has enqueued.
- `control_log`: every change to those three, with its actor and reason; append-only like
  `job_events` (UPDATE and DELETE rejected on both backends, TRUNCATE on PostgreSQL, with
  SQLSTATE ``JT001``). The limits, pauses and schedules are operator settings, not facts of
  a job's life, so they are not job events; their history is this log.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from jobtrail.adapters.sql.schema import Position, UtcDateTime, json_type

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

APPEND_ONLY_SQLSTATE = "JT001"  # jobtrail.adapters.sql.errors.APPEND_ONLY_SQLSTATE
MESSAGE = "control_log is append-only"
POSTGRES_TRIGGERS = f"""
CREATE OR REPLACE FUNCTION control_log_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '{MESSAGE}: % is not allowed', TG_OP
        USING ERRCODE = '{APPEND_ONLY_SQLSTATE}', TABLE = TG_TABLE_NAME;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER control_log_no_update_delete BEFORE UPDATE OR DELETE ON control_log
    FOR EACH ROW EXECUTE FUNCTION control_log_append_only();
CREATE TRIGGER control_log_no_truncate BEFORE TRUNCATE ON control_log
    FOR EACH STATEMENT EXECUTE FUNCTION control_log_append_only();
"""
SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER control_log_no_{name.lower()} BEFORE {name} ON control_log
        BEGIN SELECT RAISE(ABORT, '{MESSAGE}: {name} is not allowed'); END"""
    for name in ("UPDATE", "DELETE")
]
PROCESSING = sa.text("status = 'processing'")
QUEUED_WITH_KEY = sa.text("status = 'queued' AND concurrency_key IS NOT NULL")
HAS_RETRY_OF = sa.text("retry_of IS NOT NULL")
NAMED_QUEUE = sa.text("queue <> 'default'")


def upgrade() -> None:
    with op.batch_alter_table("job") as batch:
        batch.add_column(
            sa.Column("queue", sa.String(200), nullable=False, server_default="default")
        )
        batch.add_column(sa.Column("concurrency_key", sa.String(200)))
        batch.add_column(sa.Column("retry_of", sa.String(36)))
    # Partial: a row without a retry_of (a job in the default queue) has no entry, so the
    # updates of a busy worker, which cannot be HOT, add nothing to these indexes.
    op.create_index(
        "job_retry_of",
        "job",
        ["retry_of"],
        postgresql_where=HAS_RETRY_OF,
        sqlite_where=HAS_RETRY_OF,
    )
    op.create_index(
        "job_queue", "job", ["queue"], postgresql_where=NAMED_QUEUE, sqlite_where=NAMED_QUEUE
    )
    op.create_index(
        "job_running",
        "job",
        ["job_type", "concurrency_key"],
        postgresql_where=PROCESSING,
        sqlite_where=PROCESSING,
    )
    op.create_index(
        "job_queued_keys",
        "job",
        ["job_type", "concurrency_key", sa.text("priority DESC"), "available_at", "id"],
        postgresql_where=QUEUED_WITH_KEY,
        sqlite_where=QUEUED_WITH_KEY,
    )
    op.create_table(
        "job_key_cursor",
        sa.Column("job_type", sa.String(200), primary_key=True),
        sa.Column("after_key", sa.String(200), nullable=False),
    )
    op.create_table(
        "job_limit",
        sa.Column("job_type", sa.String(200), primary_key=True),
        sa.Column("per_key", sa.Boolean, primary_key=True),
        sa.Column("max_running", sa.Integer, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
    )
    op.create_table(
        "job_pause",
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("paused_at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text),
    )
    op.create_table(
        "job_schedule",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("cron", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("job_type", sa.String(200), nullable=False),
        sa.Column("payload", json_type(), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("queue", sa.String(200), nullable=False),
        sa.Column("catch_up", sa.String(8), nullable=False),
        sa.Column("last_tick_at", UtcDateTime),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
    )
    op.create_table(
        "control_log",
        sa.Column("position", Position, primary_key=True, autoincrement=True),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("data", json_type(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text),
        sqlite_autoincrement=True,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_TRIGGERS)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    op.drop_table("control_log")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION control_log_append_only()")
    for table in ("job_schedule", "job_pause", "job_limit", "job_key_cursor"):
        op.drop_table(table)
    op.drop_index("job_queued_keys", table_name="job")
    op.drop_index("job_running", table_name="job")
    op.drop_index("job_retry_of", table_name="job")
    op.drop_index("job_queue", table_name="job")
    with op.batch_alter_table("job") as batch:
        for column in ("retry_of", "concurrency_key", "queue"):
            batch.drop_column(column)
