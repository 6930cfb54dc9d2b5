"""Apply the schema migrations (Alembic) to a database; idempotent."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from adapters.database import WRITE, translated_errors

MIGRATIONS = Path(__file__).with_name("migrations")


def upgrade(engine: Engine) -> None:
    """Bring the database to the newest schema, creating it on first use."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with translated_errors(), engine.connect().execution_options(**WRITE) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
        connection.commit()
