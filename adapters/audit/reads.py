"""What replay, seal and export read from SQL: the log in two orders, seals, live rows.

The same functions read the real tables and the staging copy a file or a Kafka topic is
loaded into (`Staging`), so every source is verified by the same code. Reads stream
(server-side cursors on PostgreSQL); none of them writes, except `append_seal`.
"""

from __future__ import annotations

import itertools
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobtrail.adapters.audit.verify import LiveRow, StoredEvent
from jobtrail.adapters.sql.engine import WRITE, is_postgres, translated_errors
from jobtrail.adapters.sql.schema import UtcDateTime, job, job_events, job_log_seals
from jobtrail.domain.seals import RunningDigest, Seal
from jobtrail.projections.job_table import COLUMNS
from psycopg.types.json import set_json_loads
from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    Select,
    String,
    Table,
    create_engine,
    event,
    func,
    insert,
    select,
)

FETCH = 5000


@dataclass(frozen=True)
class LogTables:
    """The event table and the seal table a replay reads (real or staged)."""

    events: Table
    seals: Table | None


LIVE = LogTables(job_events, job_log_seals)


# ------------------------------------------------------------------------ reads


def _streamed(query: Select[Any]) -> Select[Any]:
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
    if tables.seals is None:
        return []
    s = tables.seals
    query = select(s.c.seal_id, s.c.position, s.c.event_count, s.c.digest).order_by(
        s.c.position, s.c.seal_id
    )
    return [Seal(*row) for row in conn.execute(query)]


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
    count: int = conn.execute(select(func.count()).select_from(tables.events)).scalar_one()
    return count


def last_position(conn: Connection, tables: LogTables) -> int:
    found = conn.execute(select(func.max(tables.events.c.position))).scalar_one()
    return int(found or 0)


# ------------------------------------------------------------------------ seal


@dataclass(frozen=True)
class SealRecord:
    seal_id: int
    position: int
    event_count: int
    digest: str
    previous: Seal | None


def append_seal(engine: Engine, actor: str) -> SealRecord:
    """Fold the log since the last seal into the running digest and append a seal.

    Covers every event up to the highest position visible when it starts; events appended
    meanwhile get later positions (positions are handed out in commit order) and are left
    for the next seal.
    """
    with translated_errors(), engine.connect() as conn:
        upto = last_position(conn, LIVE)
        seals = read_seals(conn, LIVE)
        previous = seals[-1] if seals else None
        running = RunningDigest.after(previous)
        for position, event_hash in stream_positions(conn, LIVE, running.position, upto):
            running.add(position, event_hash)
        conn.rollback()
    row = {
        "position": upto,
        "event_count": running.count,
        "digest": running.digest,
        "actor": actor,
    }
    with (
        translated_errors(),
        engine.connect().execution_options(**WRITE) as conn,
        conn.begin(),
    ):
        seal_id = conn.execute(insert(job_log_seals).returning(job_log_seals.c.seal_id), row)
        new_id = int(seal_id.scalar_one())
    return SealRecord(new_id, upto, running.count, running.digest, previous)


# ------------------------------------------------------------------------ staging


staging_metadata = MetaData()
staged_events = Table(
    "job_events",
    staging_metadata,
    Column("position", Integer, nullable=False),
    Column("event_id", String, nullable=False),
    Column("job_id", String, nullable=False),
    Column("version", Integer, nullable=False),
    Column("type", String, nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("data", JSON, nullable=False),
    Column("metadata", JSON, nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("prev_hash", String, nullable=False),
    Column("hash", String, nullable=False),
    Index("staged_by_job", "job_id", "version", "position"),
    Index("staged_by_position", "position"),
)
"""A copy of `job_events` without constraints: a file or a topic may hold anything."""

staged_seals = Table(
    "job_log_seals",
    staging_metadata,
    Column("seal_id", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Column("event_count", Integer, nullable=False),
    Column("digest", String, nullable=False),
)


class Staging:
    """A throwaway SQLite file holding a file's or a topic's events, so that replay can read
    them in position order and in job order without holding them in memory."""

    def __init__(self) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="jobtrail-replay-")
        path = Path(self._directory.name) / "staging.db"
        self.engine = create_engine(f"sqlite:///{path}")
        event.listen(self.engine, "connect", _fast_sqlite)
        staging_metadata.create_all(self.engine)
        self.tables = LogTables(staged_events, staged_seals)

    def add_events(self, records: Iterable[StoredEvent]) -> None:
        with self.engine.begin() as conn:
            batch: list[dict[str, Any]] = []
            for record in records:
                batch.append(record._asdict())
                if len(batch) >= FETCH:
                    conn.execute(insert(staged_events), batch)
                    batch = []
            if batch:
                conn.execute(insert(staged_events), batch)

    def add_seals(self, seals: Iterable[Seal]) -> None:
        rows = [
            {
                "seal_id": s.seal_id,
                "position": s.position,
                "event_count": s.event_count,
                "digest": s.digest,
            }
            for s in seals
        ]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(staged_seals), rows)

    def close(self) -> None:
        self.engine.dispose()
        self._directory.cleanup()


def _fast_sqlite(dbapi_connection: Any, _record: Any) -> None:
    """A scratch copy: durability does not matter, speed does."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=OFF")
    cursor.execute("PRAGMA synchronous=OFF")
    cursor.close()


def dialect_of(engine: Engine) -> str:
    return "postgresql" if is_postgres(engine) else engine.dialect.name
