"""Engines for SQLite and PostgreSQL, and the translation of driver errors.

SQLite: WAL journal, a busy timeout, and ``BEGIN IMMEDIATE`` for write transactions so
two writers never deadlock upgrading a read lock. PostgreSQL: psycopg 3, plain
``postgresql://`` URLs accepted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import psycopg
from jobtrail.domain.errors import (
    AppendOnlyViolation,
    ConcurrencyConflict,
    DatabaseUnavailable,
    JobtrailError,
    SchemaMissing,
    StorageError,
)
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


@contextlib.contextmanager
def translated_errors() -> Iterator[None]:
    """Turn driver errors into jobtrail's own, with a message a person understands."""
    try:
        yield
    except JobtrailError:
        raise
    except sa_exc.DBAPIError as error:
        raise translate(error) from error
    except psycopg.Error as error:  # from code working on the driver connection itself
        raise translate(driver_error(error)) from error


def driver_error(error: psycopg.Error) -> sa_exc.DBAPIError:
    """The error SQLAlchemy would have raised for this psycopg error."""
    wrapped = sa_exc.DBAPIError.instance(None, None, error, psycopg.Error)
    assert isinstance(wrapped, sa_exc.DBAPIError)  # a DBAPI error is never wrapped otherwise
    return wrapped


RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
"""Serialization failure and deadlock: someone else's write won; try again."""


def translate(error: sa_exc.DBAPIError) -> JobtrailError:
    text = str(error.orig).strip()
    first_line = text.splitlines()[0] if text else type(error.orig).__name__
    if "append-only" in text:
        return AppendOnlyViolation(reason=first_line)
    if "no such table" in text or "does not exist" in text and "relation" in text:
        return SchemaMissing()
    if getattr(error.orig, "sqlstate", None) in RETRYABLE_SQLSTATES:
        return ConcurrencyConflict(job_id="(several)", expected="(see the log)")
    if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError) or (
        error.connection_invalidated
    ):
        return DatabaseUnavailable(reason=first_line)
    return StorageError(reason=first_line)
