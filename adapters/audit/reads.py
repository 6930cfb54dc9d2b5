"""What replay, seal and export read from SQL: the log in two orders, seals, live rows.

The same functions read the real tables and the staging copy a file or a Kafka topic is
loaded into (`staging.Staging`), so every source is verified by the same code. Reads stream
(server-side cursors on PostgreSQL); nothing here writes (a seal is appended by `seal`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from jobtrail.adapters.audit.checks.records import StoredEvent
from jobtrail.adapters.audit.checks.row_diff import LiveRow
from jobtrail.adapters.sql.engine import is_postgres
from jobtrail.adapters.sql.schema import job, job_events, job_log_archives, job_log_seals
from jobtrail.domain.seals import ArchiveRecord, Seal
from jobtrail.projections.job_table import COLUMNS
from psycopg.types.json import set_json_loads
from sqlalchemy import Connection, Select, Table, func, select

FETCH = 5000
"""Rows per fetch of a streamed read, and per insert into staging."""


@dataclass(frozen=True)
class LogTables:
    """The event table and the seal table a replay reads (real or staged), and the
    archive records (the database's own log only)."""

    events: Table
    seals: Table | None
    archives: Table | None = None


LIVE = LogTables(job_events, job_log_seals, job_log_archives)


def _streamed(query: Select[Any]) -> Select[Any]:
    """``query`` read in batches (SQLite; PostgreSQL reads through a named cursor)."""
    return query.execution_options(stream_results=True, yield_per=FETCH)


_cursor_names = itertools.count(1)
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def lean_json_loads(data: str | bytes) -> Any:
    """``json.loads`` of a value PostgreSQL wrote, without its per-call wrapping.

    The scanner is the one `json.loads` runs; anything it does not read to the end (leading
    space, trailing data, invalid text) goes through `json.loads` itself, errors included.
    """
    text = data if isinstance(data, str) else data.decode()
    try:
        value, end = _SCAN(text, 0)
    except StopIteration:
        end = -1
    return value if end == len(text) else json.loads(text)


def _rows(conn: Connection, query: Select[Any]) -> Iterator[Sequence[Any]]:
    """The rows of ``query``, streamed, as plain tuples.

    On PostgreSQL a server-side cursor of the driver connection, in the caller's
    transaction (its snapshot), with times in UTC and the lean JSON loader: replay reads
    every event, and SQLAlchemy's per-row processing would cost about as much as the read.
    """
    if not is_postgres(conn):
        yield from conn.execute(_streamed(query))
        return
    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    conn.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")
    driver = conn.connection.driver_connection
    with driver.cursor(name=f"jobtrail_replay_{next(_cursor_names)}") as cursor:  # type: ignore[union-attr]
        set_json_loads(lean_json_loads, cursor)
        cursor.execute(str(compiled), compiled.params)
        while rows := cursor.fetchmany(FETCH):
            yield from rows


def stream_positions(
    conn: Connection, tables: LogTables, after: int = 0, upto: int | None = None
) -> Iterator[tuple[int, str]]:
    """``(position, hash)`` of every event after ``after`` (up to ``upto``), in position order."""
    t = tables.events
    query = select(t.c.position, t.c.hash).where(t.c.position > after).order_by(t.c.position)
    if upto is not None:
        query = query.where(t.c.position <= upto)
    for position, event_hash in _rows(conn, query):
        yield int(position), str(event_hash)


def _record_columns(t: Table) -> tuple[Any, ...]:
    """The event table's columns in `StoredEvent`'s field order."""
    return tuple(t.c[name] for name in StoredEvent._fields)


@dataclass(frozen=True)
class JobRange:
    """Job ids from ``lower`` (included) to ``upper`` (excluded); None: unbounded."""

    lower: str | None = None
    upper: str | None = None

    def restrict(self, query: Select[Any], column: Any) -> Select[Any]:
        if self.lower is not None:
            query = query.where(column >= self.lower)
        if self.upper is not None:
            query = query.where(column < self.upper)
        return query


EVERY_JOB = JobRange()


def stream_records(
    conn: Connection,
    tables: LogTables,
    job_id: str | None = None,
    since: int | None = None,
    jobs: JobRange = EVERY_JOB,
) -> Iterator[StoredEvent]:
    """The events of every job (or one, or those touched after ``since``), by job and version."""
    t = tables.events
    query = select(*_record_columns(t)).order_by(t.c.job_id, t.c.version, t.c.position)
    if job_id is not None:
        query = query.where(t.c.job_id == job_id)
    if since is not None:
        touched = select(t.c.job_id).where(t.c.position > since)
        query = query.where(t.c.job_id.in_(touched))
    query = jobs.restrict(query, t.c.job_id)
    for row in _rows(conn, query):
        yield StoredEvent(*row)


def stream_in_position_order(
    conn: Connection, tables: LogTables, upto: int | None = None
) -> Iterator[StoredEvent]:
    """Every event in position order (for export)."""
    t = tables.events
    query = select(*_record_columns(t)).order_by(t.c.position)
    if upto is not None:
        query = query.where(t.c.position <= upto)
    for row in _rows(conn, query):
        yield StoredEvent(*row)


def stream_live_rows(
    conn: Connection,
    job_id: str | None = None,
    since: int | None = None,
    jobs: JobRange = EVERY_JOB,
) -> Iterator[LiveRow]:
    """Rows of the live `job` table in id order, restricted like `stream_records`."""
    query = select(*(job.c[name] for name in COLUMNS)).order_by(job.c.id)
    if job_id is not None:
        query = query.where(job.c.id == job_id)
    if since is not None:
        touched = select(job_events.c.job_id).where(job_events.c.position > since)
        query = query.where(job.c.id.in_(touched))
    query = jobs.restrict(query, job.c.id)
    for row in _rows(conn, query):
        values = dict(zip(COLUMNS, row, strict=True))
        yield LiveRow(values["id"], values)


def read_seals(conn: Connection, tables: LogTables) -> list[Seal]:
    """Every seal, in position order (few: one per `jobtrail seal`); none for a topic."""
    if tables.seals is None:
        return []
    s = tables.seals
    query = select(s.c.seal_id, s.c.position, s.c.event_count, s.c.digest).order_by(
        s.c.position, s.c.seal_id
    )
    return [Seal(*row) for row in conn.execute(query)]


def read_archives(conn: Connection, tables: LogTables) -> list[ArchiveRecord]:
    """Every archive record, oldest first (few: one per `jobtrail archive`)."""
    if tables.archives is None:
        return []
    a = tables.archives
    fields = ArchiveRecord.__dataclass_fields__
    query = select(*(a.c[name] for name in fields)).order_by(a.c.archive_id)
    return [ArchiveRecord(*row) for row in conn.execute(query)]


def stream_marked(
    conn: Connection, upto: int, chosen: Select[Any]
) -> Iterator[tuple[StoredEvent, bool]]:
    """Every event up to ``upto`` in position order, marked when its job is in ``chosen``
    (a query of job ids): one pass that an archive splits into what moves and what stays.

    The chosen ids are read first and held in memory (about 100 bytes a job), and the
    events streamed in position order as an export reads them: joined in the database, the
    events came out of a hash join and had to be sorted by position again, every column
    of millions of rows spilled to disk (the read pass took 1.4× an export).
    """
    picked = {str(job_id) for (job_id,) in _rows(conn, chosen)}
    t = job_events
    query = select(*_record_columns(t)).where(t.c.position <= upto).order_by(t.c.position)
    for row in _rows(conn, query):
        record = StoredEvent(*row)
        yield record, record.job_id in picked


def stream_query(conn: Connection, query: Select[Any]) -> Iterator[Sequence[Any]]:
    """Any read of the log, streamed like the others (in the caller's transaction)."""
    return _rows(conn, query)


def split_jobs(conn: Connection, parts: int) -> list[JobRange]:
    """About equal ranges of the live `job` table's ids, covering every possible id.

    Only the balance between the ranges depends on the table: jobs it lacks still fall in
    a range (the first and the last are open-ended).
    """
    tile = func.ntile(parts).over(order_by=job.c.id).label("tile")
    tiles = select(job.c.id, tile).subquery()
    firsts = select(func.min(tiles.c.id)).group_by(tiles.c.tile).order_by(tiles.c.tile)
    bounds: list[str | None] = [None, *list(conn.execute(firsts).scalars())[1:], None]
    return [JobRange(lower, upper) for lower, upper in itertools.pairwise(bounds)]


def count_events(conn: Connection, tables: LogTables) -> int:
    """The events in the log: the total a progress bar counts towards."""
    count: int = conn.execute(select(func.count()).select_from(tables.events)).scalar_one()
    return count


def last_position(conn: Connection, tables: LogTables) -> int:
    """The highest position visible now (0: empty): where a seal or an export stops."""
    found = conn.execute(select(func.max(tables.events.c.position))).scalar_one()
    return int(found or 0)
