"""Engines for SQLite and PostgreSQL.

SQLite: WAL journal, a busy timeout, and ``BEGIN IMMEDIATE`` for write transactions so
two writers never deadlock upgrading a read lock; its ``handle_error`` hook tells a missing
schema from other errors (`jobtrail.adapters.sql.errors`). PostgreSQL: psycopg 3, plain
``postgresql://`` URLs accepted.

Driver errors are translated in `jobtrail.adapters.sql.errors`; `translated_errors` is
importable from here too, where the engine's users have always found it.
"""

from __future__ import annotations

from typing import Any

from jobtrail.adapters.sql.errors import confirm_sqlite_schema
from jobtrail.adapters.sql.errors import translated_errors as translated_errors
from jobtrail.domain.errors import DatabaseUnavailable
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

WRITE = {"jobtrail_write": True}
"""Execution options for a connection that will write (SQLite: BEGIN IMMEDIATE)."""


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` URLs and use psycopg 3 for them."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def create(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``; nothing connects until first use."""
    try:
        parsed = make_url(normalise_url(url))
    except sa_exc.ArgumentError as error:
        raise DatabaseUnavailable(reason=f"{url!r} is not a database URL") from error
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(parsed, connect_args={"timeout": 30}, **kwargs)
        _configure_sqlite(engine)
        return engine
    if parsed.get_backend_name() != "postgresql":
        raise DatabaseUnavailable(reason=f"unsupported database {parsed.get_backend_name()!r}")
    kwargs.setdefault("pool_pre_ping", True)
    # Many-row inserts go to psycopg's executemany (pipeline mode, one prepared
    # statement) rather than SQLAlchemy's multi-VALUES statements, which psycopg
    # re-parses for every batch.
    kwargs.setdefault("use_insertmanyvalues", False)
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(parsed, connect_args={"connect_timeout": 5}, **kwargs)


def is_postgres(bind: Engine | Connection) -> bool:
    return bind.dialect.name == "postgresql"


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        write = connection.get_execution_options().get("jobtrail_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    event.listen(engine, "handle_error", confirm_sqlite_schema)
