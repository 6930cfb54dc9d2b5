"""Seals: append-only checkpoints of the whole log's event count and running digest.

Like `job_events`, the table rejects UPDATE and DELETE (both backends) and TRUNCATE
(PostgreSQL) for every user, so removing a seal takes disabling its triggers.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from jobtrail.adapters.sql.schema import Position, UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

MESSAGE = "job_log_seals is append-only"

POSTGRES_TRIGGERS = f"""
CREATE OR REPLACE FUNCTION job_log_seals_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '{MESSAGE}: % is not allowed', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER job_log_seals_no_update_delete BEFORE UPDATE OR DELETE ON job_log_seals
    FOR EACH ROW EXECUTE FUNCTION job_log_seals_append_only();
CREATE TRIGGER job_log_seals_no_truncate BEFORE TRUNCATE ON job_log_seals
    FOR EACH STATEMENT EXECUTE FUNCTION job_log_seals_append_only();
"""

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER job_log_seals_no_{name.lower()} BEFORE {name} ON job_log_seals
        BEGIN SELECT RAISE(ABORT, '{MESSAGE}: {name} is not allowed'); END"""
    for name in ("UPDATE", "DELETE")
]


def upgrade() -> None:
    op.create_table(
        "job_log_seals",
        sa.Column("seal_id", Position, primary_key=True, autoincrement=True),
        sa.Column("position", Position, nullable=False),
        sa.Column("event_count", sa.BigInteger, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column(
            "sealed_at", UtcDateTime, nullable=False, server_default=sa.func.current_timestamp()
        ),
        sa.Column("actor", sa.String(200), nullable=False),
        sqlite_autoincrement=True,
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_TRIGGERS)
    else:
        for statement in SQLITE_TRIGGERS:
            op.execute(statement)


def downgrade() -> None:
    op.drop_table("job_log_seals")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION job_log_seals_append_only()")
