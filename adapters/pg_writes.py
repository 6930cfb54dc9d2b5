"""Set-based writes for PostgreSQL: one statement per batch, whatever its size.

A worker's turn updates dozens of `job` rows and inserts as many events and leases.
Sent as executemany, every row costs a round of parameter handling in SQLAlchemy and
psycopg (about 10 us each, on the worker's one busy thread); sent as arrays through
``unnest``, a batch is one statement whose parameters psycopg dumps in C, and whose text
never changes, so the server prepares it once. SQLite keeps the portable statements.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Connection, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import CursorResult

from adapters.schema import job, job_events, job_lease
from domain.events import Event

_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
_EVENT_COLUMNS = (
    "event_id",
    "job_id",
    "version",
    "type",
    "schema_version",
    "data",
    "metadata",
    "occurred_at",
    "prev_hash",
    "hash",
)
_LEASE_COLUMNS = ("job_id", "attempt", "worker_id", "expires_at")


def insert_events(conn: Connection, events: Sequence[Event]) -> None:
    """Insert events in the given order: positions follow it (``WITH ORDINALITY``).

    Each row is the event's canonical text (what its hash covers: every column but the
    hash) with the hash added, so nothing is encoded twice and the stored data is
    exactly what was hashed.
    """
    document = "[" + ",".join(f'{e.canonical()[:-1]},"hash":"{e.hash}"}}' for e in events) + "]"
    conn.exec_driver_sql(_insert_sql(job_events, _EVENT_COLUMNS), (document,))


def insert_leases(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    conn.exec_driver_sql(_insert_sql(job_lease, _LEASE_COLUMNS), (_rows_json(rows),))


def update_jobs(conn: Connection, columns: tuple[str, ...], rows: Sequence[dict[str, Any]]) -> int:
    """``UPDATE job SET <columns> WHERE id = row_id AND version = row_version`` for each
    row, in one statement; returns how many rows matched."""
    result: CursorResult[Any] = conn.exec_driver_sql(
        _update_sql(columns), {"rows": _rows_json(rows)}
    )
    return result.rowcount


def _rows_json(rows: Sequence[dict[str, Any]]) -> str:
    return json.dumps(rows, default=_iso, separators=(",", ":"))


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


@functools.cache
def _insert_sql(table: Table, columns: tuple[str, ...]) -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    return (
        f"INSERT INTO {table.name} ({names}) SELECT {names}"
        f" FROM ROWS FROM (json_to_recordset(%s::json) AS ({_record(table, columns)}))"
        f" WITH ORDINALITY AS v({names}, n)"
        " ORDER BY v.n"
    )


@functools.cache
def _update_sql(columns: tuple[str, ...]) -> str:
    assign = ", ".join(f'"{c}" = v."{c}"' for c in columns)
    return (
        f"UPDATE job SET {assign}"
        f" FROM json_to_recordset(%(rows)s::json)"
        f" AS v(row_id text, row_version int, {_record(job, columns)})"
        " WHERE job.id = v.row_id AND job.version = v.row_version"
        # Lets the planner find the rows by primary key: the function's row estimate
        # (100) would otherwise make it hash-join a scan of the whole table.
        " AND job.id = ANY(ARRAY(SELECT r->>'row_id' FROM json_array_elements(%(rows)s::json) r))"
    )


def _record(table: Table, columns: Sequence[str]) -> str:
    """The record definition: each column with its type (JSON columns as jsonb; a JSON
    null becomes SQL NULL, as SQLAlchemy binds None for them)."""
    return ", ".join(f'"{c}" {_sql_type(table.c[c])}' for c in columns)


def _sql_type(column: Column[Any]) -> str:
    return "jsonb" if isinstance(column.type, JSON) else str(column.type.compile(_DIALECT))
