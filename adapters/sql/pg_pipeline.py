"""A worker's turn on PostgreSQL: set-based statements, sent together in one round trip.

A turn updates dozens of `job` rows (their leases with them) and inserts as many events.
Sent as executemany, every row cost a round of parameter handling in SQLAlchemy and psycopg;
here each kind of write is one statement over a JSON document (``json_to_recordset``),
whose text never changes, so the server prepares it once. And the statements are sent
in psycopg's pipeline mode: the turn waits for the server once instead of once per
statement (a round trip is cheap on an idle machine, not on a busy one). The checks
that decide the outcome (rows matched, unique versions) are made before the caller
commits. SQLite keeps the portable statements (`jobtrail.adapters.sql.store`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from jobtrail.adapters.sql.errors import Collision, collision, driver_error
from jobtrail.adapters.sql.schema import APPENDED_EVENT_COLUMNS, job, job_events
from jobtrail.domain.errors import ConcurrencyConflict
from jobtrail.domain.events import Event
from sqlalchemy import JSON, Column, Connection, Table
from sqlalchemy.dialects import postgresql

Rows = Sequence[dict[str, Any]]
_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]
_LOCK_ROWS = "SELECT id FROM job WHERE id = ANY(%s::text[]) ORDER BY id FOR UPDATE"
_APPEND_LOCK = "SELECT pg_advisory_xact_lock(%s)"


class PipelinedWrites:
    """The writes of one turn, queued in order, sent and checked by `finish`."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._statements: list[tuple[str, Any]] = []
        self._matches: list[tuple[int, int, ConcurrencyConflict]] = []
        self._duplicate: ConcurrencyConflict | None = None

    def lock_rows(self, ids: list[str]) -> None:
        """Lock rows in id order first, so two batches over the same jobs cannot deadlock."""
        self._statements.append((_LOCK_ROWS, (ids,)))

    def update_rows(
        self,
        columns: tuple[str, ...],
        rows: Sequence[dict[str, Any]],
        conflict: ConcurrencyConflict,
    ) -> None:
        """``UPDATE job SET <columns> WHERE id = row_id AND version = row_version`` for
        each row; ``conflict`` is raised unless every row matched."""
        self._matches.append((len(self._statements), len(rows), conflict))
        self._statements.append((_update_sql(columns), {"rows": _rows_json(rows)}))

    def lock_appends(self, key: int) -> None:
        self._statements.append((_APPEND_LOCK, (key,)))

    def insert_events(self, events: Sequence[Event], conflict: ConcurrencyConflict) -> None:
        """Insert events in the given order: positions follow it (``WITH ORDINALITY``).

        Each row is the event's canonical text (what its hash covers: every column but
        the hash) with the hash added, so nothing is encoded twice and the stored data
        is exactly what was hashed. A version already taken raises ``conflict``.
        """
        rows = ",".join(f'{e.canonical()[:-1]},"hash":"{e.hash}"}}' for e in events)
        self._statements.append((_insert_sql(job_events, APPENDED_EVENT_COLUMNS), (f"[{rows}]",)))
        self._duplicate = conflict

    def finish(self) -> None:
        """Send everything queued, wait once, and check it (before the caller commits)."""
        raw: psycopg.Connection[Any] = self.conn.connection.driver_connection  # type: ignore[assignment]
        cursors = []
        try:
            with raw.pipeline():
                for statement, params in self._statements:
                    cursor = raw.cursor()
                    cursor.execute(statement, params)
                    cursors.append(cursor)
        except psycopg.Error as error:
            found = collision(error, job_events.name)
            if found is Collision.EVENT and self._duplicate is not None:
                raise self._duplicate from error
            raise driver_error(error) from error
        for index, expected, conflict in self._matches:
            if cursors[index].rowcount != expected:
                raise conflict


def insert_new_rows(conn: Connection, rows: Rows) -> list[dict[str, Any]]:
    """Insert new `job` rows in one statement; returns the rows skipped because their id
    or idempotency key is taken (or given twice in ``rows``), in their order."""
    columns = tuple(rows[0])
    statement = _insert_sql(job, columns) + " ON CONFLICT DO NOTHING RETURNING id"
    inserted = set(conn.exec_driver_sql(statement, (_rows_json(rows),)).scalars())
    if len(inserted) == len(rows):
        return []
    skipped, seen = [], set()
    for row in rows:
        if row["id"] in inserted and row["id"] not in seen:
            seen.add(row["id"])
        else:
            skipped.append(row)
    return skipped


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
