"""The append-only triggers raise a SQLSTATE of their own (PostgreSQL).

Until now they raised PL/pgSQL's default ``P0001`` (raise_exception), which any function
raises, so an append-only violation could only be told from another error by its message
text. Now they raise ``JT001`` (class ``J``, one PostgreSQL leaves to applications) and
name the table (``TABLE = TG_TABLE_NAME``): `jobtrail.adapters.sql.errors` maps the code to
`AppendOnlyViolation`. The message stays as it was, for people.

SQLite needs nothing: a ``RAISE(ABORT, …)`` in a trigger already has its own code,
``SQLITE_CONSTRAINT_TRIGGER``.

Revision ID: 0006
Revises: 0005
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

APPEND_ONLY_SQLSTATE = "JT001"  # jobtrail.adapters.sql.errors.APPEND_ONLY_SQLSTATE
TABLES = ("job_events", "job_log_seals")


def _function(table: str, using: str) -> str:
    return f"""
CREATE OR REPLACE FUNCTION {table}_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION '{table} is append-only: % is not allowed', TG_OP{using};
END;
$$ LANGUAGE plpgsql;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    using = f" USING ERRCODE = '{APPEND_ONLY_SQLSTATE}', TABLE = TG_TABLE_NAME"
    for table in TABLES:
        op.execute(_function(table, using))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(_function(table, ""))
