"""The one place where database driver errors become jobtrail's own.

Errors are told apart by the codes the drivers give, never by their message text (the
message only becomes the ``reason`` a person reads).

PostgreSQL (psycopg 3: ``sqlstate``, ``diag.constraint_name``):

================================================  ==================================
SQLSTATE                                          error
================================================  ==================================
``JT001`` (ours: the append-only triggers raise   `AppendOnlyViolation`
it, migration 0006)
``42P01`` undefined_table                         `SchemaMissing`
``40001`` serialization_failure,                  `ConcurrencyConflict`
``40P01`` deadlock_detected
``23505`` unique_violation on ``job_pkey``,       `ConcurrencyConflict`
``job_events_job_id_version_key`` or
``job_events_event_id_key``
``23505`` on ``job_idempotency_key``              `DuplicateIdempotencyKey`
class ``08`` connection exception, ``53``         `DatabaseUnavailable`
insufficient resources, ``57`` operator
intervention (shutdown, crash, starting up,
cancelled), ``58`` system error, ``3D000``
no such database; no SQLSTATE at all on an
OperationalError/InterfaceError (libpq could not
connect or lost the connection)
anything else                                     `StorageError`
================================================  ==================================

SQLite (Python's sqlite3: exception class and ``sqlite_errorcode``):

================================================  ==================================
class and code                                    error
================================================  ==================================
IntegrityError ``SQLITE_CONSTRAINT_TRIGGER``      `AppendOnlyViolation` (``RAISE(ABORT)``
                                                  in a trigger; the schema's only
                                                  triggers are the append-only ones)
OperationalError ``SQLITE_ERROR`` and a jobtrail  `SchemaMissing`
table is missing from ``sqlite_master``
OperationalError, any other code (BUSY, LOCKED,   `DatabaseUnavailable`
CANTOPEN, IOERR, FULL, READONLY, …)
anything else (incl. ``SQLITE_ERROR`` with the    `StorageError`
schema present)
================================================  ==================================

SQLite says "no such table" with the generic ``SQLITE_ERROR`` code, which a syntax error
also has. So a ``handle_error`` hook (`confirm_sqlite_schema`, installed on every SQLite
engine by `jobtrail.adapters.sql.engine`) confirms it while the failed connection is still
at hand: one query of ``sqlite_master`` for the tables of `schema.metadata`, made only
after such an error, never on the happy path.

Unique violations: the PostgreSQL error names the constraint; a SQLite error does not, only
whether a table's primary key (``SQLITE_CONSTRAINT_PRIMARYKEY``) or one of its unique
indexes (``SQLITE_CONSTRAINT_UNIQUE``) was hit. `collision` takes the table the caller
inserted into and answers which key collided: the `job` table has one unique index besides
its key (the idempotency key), and `job_events` has two that mean the same thing (the event
is already in the log). tests/contract/test_sql_errors.py keeps the schema that way.

psycopg is imported by the PostgreSQL dialect, not here: a psycopg error can only exist once
psycopg is loaded, so the SQLite path never pays for importing it.
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from collections.abc import Iterator
from enum import Enum
from typing import Any

from jobtrail.adapters.sql.schema import metadata
from jobtrail.domain.errors import (
    AppendOnlyViolation,
    ConcurrencyConflict,
    DatabaseUnavailable,
    DuplicateIdempotencyKey,
    JobtrailError,
    SchemaMissing,
    StorageError,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext

APPEND_ONLY_SQLSTATE = "JT001"
"""What the PostgreSQL append-only triggers raise (``J``: a class PostgreSQL leaves to
applications)."""
SCHEMA_MISSING_SQLSTATES = frozenset({"42P01"})
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
"""Serialization failure and deadlock: someone else's write won; try again."""
UNIQUE_VIOLATION = "23505"
UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "58"})
UNAVAILABLE_SQLSTATES = frozenset({"3D000"})

SQLITE_ERROR = 1  # the generic code: "no such table", but also syntax errors
SQLITE_CONSTRAINT_PRIMARYKEY = 1555
SQLITE_CONSTRAINT_TRIGGER = 1811
SQLITE_CONSTRAINT_UNIQUE = 2067


class Collision(Enum):
    """Which unique key of the schema an insert collided with."""

    JOB_ID = "a new job's id is taken"
    IDEMPOTENCY_KEY = "a new job's idempotency key is taken"
    EVENT = "the event's (job id, version) or event id is already in the log"


POSTGRES_CONSTRAINTS = {
    "job_pkey": Collision.JOB_ID,
    "job_idempotency_key": Collision.IDEMPOTENCY_KEY,
    "job_events_job_id_version_key": Collision.EVENT,
    "job_events_event_id_key": Collision.EVENT,
}
"""Unique constraints and indexes by name (``job_pkey`` and ``job_events_event_id_key`` are
the names PostgreSQL gives the unnamed ones)."""

SQLITE_CONSTRAINTS = {
    ("job", SQLITE_CONSTRAINT_PRIMARYKEY): Collision.JOB_ID,
    ("job", SQLITE_CONSTRAINT_UNIQUE): Collision.IDEMPOTENCY_KEY,
    ("job_events", SQLITE_CONSTRAINT_UNIQUE): Collision.EVENT,
}
"""By the table inserted into and the kind of key: SQLite does not name the constraint."""


@contextlib.contextmanager
def translated_errors() -> Iterator[None]:
    """Turn driver errors into jobtrail's own, with a message a person understands."""
    try:
        yield
    except JobtrailError:
        raise
    except sa_exc.DBAPIError as error:
        raise translate(error) from error
    except Exception as error:
        if _is_psycopg_error(error):  # from code working on the driver connection itself
            raise translate(driver_error(error)) from error
        raise


def translate(error: sa_exc.DBAPIError) -> JobtrailError:
    """The jobtrail error for a driver error (see the tables at the top of the module)."""
    orig: Any = error.orig
    if isinstance(orig, sqlite3.Error):
        return _translate_sqlite(orig, error)
    reason = _first_line(orig)
    sqlstate: str | None = getattr(orig, "sqlstate", None)
    if sqlstate is None:
        if error.connection_invalidated or isinstance(
            error, sa_exc.OperationalError | sa_exc.InterfaceError
        ):
            return DatabaseUnavailable(reason=reason)
        return StorageError(reason=reason)
    if sqlstate == APPEND_ONLY_SQLSTATE:
        return AppendOnlyViolation(reason=reason)
    if sqlstate in SCHEMA_MISSING_SQLSTATES:
        return SchemaMissing()
    if sqlstate in RETRYABLE_SQLSTATES:
        return ConcurrencyConflict(job_id="(several)", expected="(see the log)")
    if sqlstate == UNIQUE_VIOLATION:
        found = POSTGRES_CONSTRAINTS.get(getattr(orig.diag, "constraint_name", None) or "")
        if found is Collision.IDEMPOTENCY_KEY:
            return DuplicateIdempotencyKey(key="(see the job table)")
        if found is not None:
            return ConcurrencyConflict(job_id="(several)", expected="(see the log)")
    if (
        sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES
        or sqlstate in UNAVAILABLE_SQLSTATES
        or error.connection_invalidated
    ):
        return DatabaseUnavailable(reason=reason)
    return StorageError(reason=reason)


def _translate_sqlite(orig: sqlite3.Error, error: sa_exc.DBAPIError) -> JobtrailError:
    code = getattr(orig, "sqlite_errorcode", None)
    reason = _first_line(orig)
    if isinstance(orig, sqlite3.IntegrityError) and code == SQLITE_CONSTRAINT_TRIGGER:
        return AppendOnlyViolation(reason=reason)
    if isinstance(orig, sqlite3.OperationalError) and code != SQLITE_ERROR:
        return DatabaseUnavailable(reason=reason)
    if error.connection_invalidated:
        return DatabaseUnavailable(reason=reason)
    return StorageError(reason=reason)


def collision(error: Exception, table: str) -> Collision | None:
    """Which unique key of ``table`` an INSERT into it collided with; None when ``error``
    is not a unique violation of a key jobtrail knows.

    ``error`` is SQLAlchemy's `IntegrityError` or a psycopg error (the PostgreSQL pipeline).
    """
    orig: Any = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    if isinstance(orig, sqlite3.IntegrityError):
        return SQLITE_CONSTRAINTS.get((table, getattr(orig, "sqlite_errorcode", -1)))
    if getattr(orig, "sqlstate", None) != UNIQUE_VIOLATION:
        return None
    return POSTGRES_CONSTRAINTS.get(getattr(orig.diag, "constraint_name", None) or "")


def driver_error(error: Exception) -> sa_exc.DBAPIError:
    """The error SQLAlchemy would have raised for this psycopg error."""
    psycopg: Any = sys.modules["psycopg"]
    wrapped = sa_exc.DBAPIError.instance(None, None, error, psycopg.Error)
    assert isinstance(wrapped, sa_exc.DBAPIError)  # a DBAPI error is never wrapped otherwise
    return wrapped


def confirm_sqlite_schema(context: ExceptionContext) -> None:
    """SQLite's ``handle_error`` hook: an ``SQLITE_ERROR`` raised while a jobtrail table is
    missing becomes `SchemaMissing` (SQLite has no code of its own for "no such table").

    The check is one read of ``sqlite_master`` on the connection that failed, made only
    after such an error. Anything else is left to `translate`.
    """
    orig = context.original_exception
    if not (
        isinstance(orig, sqlite3.OperationalError)
        and getattr(orig, "sqlite_errorcode", None) == SQLITE_ERROR
        and context.connection is not None
        and not context.is_pre_ping
    ):
        return
    try:
        driver = context.connection.connection.driver_connection
        assert driver is not None
        cursor = driver.cursor()
        try:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            present = {name for (name,) in cursor.fetchall()}
        finally:
            cursor.close()
    except Exception:  # noqa: BLE001 - the original error is the one to report
        return
    if not set(metadata.tables) <= present:
        raise SchemaMissing() from context.sqlalchemy_exception


def _is_psycopg_error(error: Exception) -> bool:
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(error, psycopg.Error)


def _first_line(orig: BaseException) -> str:
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__
