"""Apply the schema migrations (Alembic) to a database; idempotent, and safe to run at once.

Two `jobtrail db init` at the same moment on an empty PostgreSQL database would both create
the tables, and one would fail on a duplicate key in ``pg_type``. So the migration runs in one
transaction that first takes a transaction-scoped advisory lock (`MIGRATION_LOCK`): the second
waits, then finds the schema at head and does nothing. SQLite needs nothing more: the
migration's write transaction (``BEGIN IMMEDIATE``) already holds the database's write lock.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from jobtrail.adapters.sql.engine import WRITE, ensure_sqlite_file, is_postgres, translated_errors
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).with_name("migrations")

MIGRATION_LOCK = 0x6A6F_6274_6D69_6772
"""``pg_advisory_xact_lock`` key of migrations ("jobtmigr"); appends take 0x6A6F6274."""


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head() -> str | None:
    """The newest schema revision this version of jobtrail knows."""
    return ScriptDirectory.from_config(_config()).get_current_head()


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema, creating it on first use (on SQLite, the
    file too)."""
    config = _config()
    with translated_errors():
        ensure_sqlite_file(engine)
        with engine.connect().execution_options(**WRITE) as connection:
            if is_postgres(connection):
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()
