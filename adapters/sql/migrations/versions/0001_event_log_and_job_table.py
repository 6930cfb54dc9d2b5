"""The append-only event log and the `job` projection.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from jobtrail.adapters.sql.schema import UtcDateTime, json_type

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

APPEND_ONLY_MESSAGE = "job_events is append-only"

POSTGRES_TRIGGERS = f"""
CREATE OR REPLACE FUNCTION job_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}: % is not allowed', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER job_events_no_update_delete BEFORE UPDATE OR DELETE ON job_events
    FOR EACH ROW EXECUTE FUNCTION job_events_append_only();
CREATE TRIGGER job_events_no_truncate BEFORE TRUNCATE ON job_events
    FOR EACH STATEMENT EXECUTE FUNCTION job_events_append_only();
"""

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER job_events_no_{op_name.lower()} BEFORE {op_name} ON job_events
        BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}: {op_name} is not allowed'); END"""
    for op_name in ("UPDATE", "DELETE")
]


def upgrade() -> None:
    position = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    op.create_table(
        "job_events",
        sa.Column("position", position, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False, unique=True),
        sa.Column("job_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("schema_version", sa.Integer, nullable=False),
        sa.Column("data", json_type(), nullable=False),
        sa.Column("metadata", json_type(), nullable=False),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
        sa.Column(
            "recorded_at", UtcDateTime, nullable=False, server_default=sa.func.current_timestamp()
        ),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("job_id", "version", name="job_events_job_id_version_key"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "job",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("job_type", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("payload", json_type(none_as_null=True)),
        sa.Column("result", json_type(none_as_null=True)),
        sa.Column("error_type", sa.String(200)),
        sa.Column("error_code", sa.String(100)),
        sa.Column("error_message", sa.Text),
        sa.Column("error_category", sa.String(16)),
        sa.Column("progress", sa.Integer, nullable=False),
        sa.Column("worker_id", sa.String(200)),
        sa.Column("idempotency_key", sa.String(200)),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("available_at", UtcDateTime, nullable=False),
        sa.Column("started_at", UtcDateTime),
        sa.Column("completed_at", UtcDateTime),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("job_idempotency_key", "job", ["idempotency_key"], unique=True)
    op.create_index("job_status_available", "job", ["status", "priority", "available_at"])
    op.create_index("job_type_status", "job", ["job_type", "status"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_TRIGGERS)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    op.drop_table("job")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE job_events")
        op.execute("DROP FUNCTION job_events_append_only()")
    else:
        op.drop_table("job_events")
