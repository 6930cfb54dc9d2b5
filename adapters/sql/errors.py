"""The one place where database driver errors become jobtrail's own.

Errors are told apart by the codes the drivers give, never by their message text (the
message only becomes the ``reason`` a person reads).

PostgreSQL (psycopg 3: ``sqlstate``, ``diag.constraint_name``):

================================================  ==================================
SQLSTATE                                          error
================================================  ==================================
``JT001`` (ours: the append-only triggers raise   `AppendOnlyViolation`
it, migration 0006)
``JT002`` (ours: `jobtrail_archive_events`        `ArchiveRefused`
refuses a job, 0012, 0015)
``42P01`` undefined_table                         `SchemaMissing`
``40001`` serialization_failure,                  `ConcurrencyConflict`
``40P01`` deadlock_detected
``23505`` unique_violation on ``job_pkey``,       `ConcurrencyConflict`
``job_events_job_id_version_key`` or
``job_events_event_id_key``
``23505`` on ``job_idempotency_key``              `DuplicateIdempotencyKey`
class ``22`` data exception (``22001`` string     `DataRejected`
too long, ``22003`` number out of range,
``22P05``/``22021`` characters it cannot store,
``22P02`` bad JSON, …), ``23502`` not null,
``23514`` check violation; a psycopg
``DataError`` without SQLSTATE (U+0000 in text)
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
IntegrityError ``SQLITE_CONSTRAINT_NOTNULL`` or   `DataRejected`
``_CHECK``; DataError (too big)
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

Refused values: the validation layer (`jobtrail.domain.limits`, `jobtrail.domain.json_values`)
keeps values the columns cannot hold from reaching the database; these errors are the last
line of defence. PostgreSQL names the column only for some of them (``diag.column_name`` is
empty for ``22001`` and ``22003``), so a ``handle_error`` hook on every engine
(`name_refused_value`) looks, while the failed statement is still at hand, for the bound value
its column type cannot hold (a text longer than its ``VARCHAR``, an integer beyond its
``integer``/``bigint``, U+0000 or a lone surrogate, JSON outside the accepted domain, a null in
a ``NOT NULL`` column) and names that column: `DataRejected` says which and why, in one line.
The same hook turns what the drivers raise as plain Python errors while binding (sqlite3's
``OverflowError`` for an integer beyond 64 bits, a ``UnicodeEncodeError`` for a lone
surrogate) into `DataRejected`. It reads the statement's parameters and the schema's types,
never the message text.

psycopg is imported by the PostgreSQL dialect, not here: a psycopg error can only exist once
psycopg is loaded, so the SQLite path never pays for importing it.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import sys
from collections.abc import Iterator
from enum import Enum
from typing import Any

from jobtrail.adapters.sql.schema import metadata
from jobtrail.domain.errors import (
    AppendOnlyViolation,
    ArchiveRefused,
    ConcurrencyConflict,
    DatabaseUnavailable,
    DataRejected,
    DuplicateIdempotencyKey,
    InvalidJsonValue,
    JobtrailError,
    SchemaMissing,
    StorageError,
)
from jobtrail.domain.json_values import check_json
from jobtrail.domain.limits import INT32_MAX, INT64_MAX, shown
from sqlalchemy import JSON, BigInteger, Column, Integer, String, Table, TypeDecorator
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext

APPEND_ONLY_SQLSTATE = "JT001"
"""What the PostgreSQL append-only triggers raise (``J``: a class PostgreSQL leaves to
applications)."""
ARCHIVE_REFUSED_SQLSTATE = "JT002"
"""What the archive function raises for a job whose history is not whole, finished and sealed."""
SCHEMA_MISSING_SQLSTATES = frozenset({"42P01"})
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
"""Serialization failure and deadlock: someone else's write won; try again."""
UNIQUE_VIOLATION = "23505"
DATA_SQLSTATE_CLASS = "22"
"""Data exception: a value the column's type cannot hold."""
DATA_SQLSTATES = frozenset({"23502", "23514"})
"""Not-null and check violations: the row's values are refused."""
UNAVAILABLE_SQLSTATE_CLASSES = frozenset({"08", "53", "57", "58"})
UNAVAILABLE_SQLSTATES = frozenset({"3D000"})

SQLITE_ERROR = 1  # the generic code: "no such table", but also syntax errors
SQLITE_CONSTRAINT_PRIMARYKEY = 1555
SQLITE_CONSTRAINT_TRIGGER = 1811
SQLITE_CONSTRAINT_UNIQUE = 2067
SQLITE_CONSTRAINT_NOTNULL = 1299
SQLITE_CONSTRAINT_CHECK = 275


_BAD_CHARACTER = re.compile("[\x00\ud800-\udfff]")


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
        if isinstance(error, sa_exc.DataError):  # refused while binding (U+0000 in a text)
            return DataRejected(column=None, reason=reason)
        if error.connection_invalidated or isinstance(
            error, sa_exc.OperationalError | sa_exc.InterfaceError
        ):
            return DatabaseUnavailable(reason=reason)
        return StorageError(reason=reason)
    if sqlstate == APPEND_ONLY_SQLSTATE:
        return AppendOnlyViolation(reason=reason)
    if sqlstate == ARCHIVE_REFUSED_SQLSTATE:
        return ArchiveRefused(reason=_primary(orig))
    if sqlstate in SCHEMA_MISSING_SQLSTATES:
        return SchemaMissing()
    if sqlstate in RETRYABLE_SQLSTATES:
        return ConcurrencyConflict(job_id="(several)", expected="(see the log)")
    if sqlstate[:2] == DATA_SQLSTATE_CLASS or sqlstate in DATA_SQLSTATES:
        return DataRejected(column=_diag_column(orig), reason=_primary(orig))
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
    if _sqlite_refuses_data(orig):
        return DataRejected(column=None, reason=reason)
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


# ------------------------------------------------------------------ refused values


def name_refused_value(context: ExceptionContext) -> None:
    """Every engine's ``handle_error`` hook: a value the database refused becomes
    `DataRejected` naming its column (see the module's docstring). Anything else is left to
    `translate`."""
    orig = context.original_exception
    if not _refuses_data(orig):
        return
    found = _refused_parameter(context)
    column: str | None
    if found is not None:
        column, reason = found
    else:
        column = _diag_column(orig)
        reason = _primary(orig) if getattr(orig, "sqlstate", None) else _first_line(orig)
    raise DataRejected(column=column, reason=reason) from context.sqlalchemy_exception or orig


def _refuses_data(orig: BaseException) -> bool:
    if isinstance(orig, OverflowError | UnicodeEncodeError):  # raised by a driver binding
        return True
    if isinstance(orig, sqlite3.Error):
        return _sqlite_refuses_data(orig)
    if not _is_psycopg_error(orig):
        return False
    sqlstate: str | None = getattr(orig, "sqlstate", None)
    if sqlstate is None:
        return isinstance(orig, sys.modules["psycopg"].DataError)
    return sqlstate[:2] == DATA_SQLSTATE_CLASS or sqlstate in DATA_SQLSTATES


def _sqlite_refuses_data(orig: BaseException) -> bool:
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(orig, sqlite3.IntegrityError):
        return code in (SQLITE_CONSTRAINT_NOTNULL, SQLITE_CONSTRAINT_CHECK)
    return isinstance(orig, sqlite3.DataError)


def _refused_parameter(context: ExceptionContext) -> tuple[str, str] | None:
    """The first bound value its column's type cannot hold: (column, why)."""
    execution: Any = context.execution_context  # DefaultExecutionContext: compiled_parameters
    compiled: Any = getattr(execution, "compiled", None)
    if execution is None or compiled is None:
        return None
    table = getattr(compiled.statement, "table", None)
    columns = table.c if isinstance(table, Table) else None
    wide = context.dialect.name == "sqlite"  # SQLite's INTEGER holds 64 bits
    for row in execution.compiled_parameters or []:
        for name, value in row.items():
            bind = compiled.binds.get(name)
            column = columns.get(name) if columns is not None else None
            why = _why_refused(value, bind.type if bind is not None else None, column, wide)
            if why is not None:
                return _label(name, table, column), why
    return None


def _why_refused(value: Any, kind: Any, column: Column[Any] | None, wide: bool) -> str | None:
    if isinstance(kind, TypeDecorator):
        kind = kind.impl_instance
    if value is None:
        return "must not be null" if column is not None and not column.nullable else None
    if isinstance(kind, JSON):
        try:
            check_json(value, "")
        except InvalidJsonValue as error:
            where = error.where.lstrip(".")
            return f"{where}: {error.reason}" if where else error.reason
        return None
    if isinstance(value, str):
        bad = _BAD_CHARACTER.search(value)
        if bad is not None:
            found = bad.group()
            if found == "\x00":
                return "contains U+0000, which PostgreSQL cannot store"
            return f"contains a lone surrogate \\u{ord(found):04x}, which is not Unicode"
        if isinstance(kind, String) and kind.length and len(value) > kind.length:
            return f"is {len(value):,} characters long; the column holds {kind.length}"
        return None
    if isinstance(kind, Integer) and not isinstance(value, bool):
        if not isinstance(value, int):
            return f"{shown(value)} is not an integer"
        high = INT64_MAX if wide or isinstance(kind, BigInteger) else INT32_MAX
        if not -high - 1 <= value <= high:
            return f"{shown(value)} is beyond a {64 if high == INT64_MAX else 32}-bit integer"
    return None


def _label(name: str, table: Any, column: Column[Any] | None) -> str:
    if column is not None and table is not None:
        return f"{table.name}.{column.name}"
    base = re.sub(r"_\d+$", "", name)  # a WHERE clause's bind: position_1
    if any(base in t.c for t in metadata.tables.values()):
        return base
    return f"the parameter {name}"


def _diag_column(orig: BaseException) -> str | None:
    diag = getattr(orig, "diag", None)
    column = getattr(diag, "column_name", None)
    table = getattr(diag, "table_name", None)
    if column and table:
        return f"{table}.{column}"
    return column or None


def _primary(orig: BaseException) -> str:
    """PostgreSQL's own one-line message (``diag.message_primary``), for people to read."""
    primary = getattr(getattr(orig, "diag", None), "message_primary", None)
    return primary or _first_line(orig)


def _is_psycopg_error(error: BaseException) -> bool:
    psycopg = sys.modules.get("psycopg")
    return psycopg is not None and isinstance(error, psycopg.Error)


def _first_line(orig: BaseException) -> str:
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__
