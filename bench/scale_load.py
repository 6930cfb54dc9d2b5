"""bench.scale's databases (named ones it can keep), a log of finished jobs loaded by COPY,
what they take on disk, and the plans of the hot statements (``--explain``).

Each job's history is made by the domain itself (`bench.rebuild.job_history`: queued,
started, progressed, then completed; 1 in 10 failed for credits, 1 in 20 retried once and
completed: 4.1 events per job on average), so every event is hashed and chained as a live
append would have it, and a later `jobtrail replay` or archive over the log is meaningful.
The events of each chunk of jobs are interleaved by time, as concurrent jobs' would be, and
COPied with the `job` rows `fold` makes of each history (`bench.replay.event_row`,
`job_row`). ``processes`` loader processes take alternate chunks, each on its own
connection, so positions stay roughly in time order.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from jobtrail.adapters.sql.schema import APPENDED_EVENT_COLUMNS
from jobtrail.projections.job_table import COLUMNS
from psycopg import sql

from bench.common import PostgresDatabase, admin_url, open_trail
from bench.rebuild import job_history
from bench.replay import event_row, job_row

CHUNK = 1000
"""Jobs per COPY (and per commit)."""

COPY_EVENTS = f"COPY job_events ({', '.join(APPENDED_EVENT_COLUMNS)}) FROM STDIN"
COPY_JOBS = f"COPY job ({', '.join(COLUMNS)}) FROM STDIN"

LOADED_NOTE = "bench.scale loaded"

SIZES = """
SELECT c.relname, i.indrelid::regclass::text, pg_total_relation_size(c.oid)
FROM pg_class c LEFT JOIN pg_index i ON i.indexrelid = c.oid
WHERE c.relname IN ('job', 'job_events')
   OR i.indrelid IN ('job'::regclass, 'job_events'::regclass)
ORDER BY 2 NULLS FIRST, 3 DESC
"""
"""Each table (heap and TOAST) and each of their indexes, in bytes (a table's total size
includes its indexes: `table_bytes` takes them out)."""


# ---------------------------------------------------------------------- databases


def database(name: str) -> PostgresDatabase:
    return PostgresDatabase(name, psycopg.conninfo.make_conninfo(admin_url(), dbname=name))


def _admin(
    statement: sql.Composed | sql.SQL, params: tuple[object, ...] = ()
) -> list[tuple[object, ...]]:
    with psycopg.connect(admin_url(), autocommit=True, connect_timeout=5) as admin:
        cursor = admin.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def exists(name: str) -> bool:
    return bool(_admin(sql.SQL("SELECT 1 FROM pg_database WHERE datname = %s"), (name,)))


def create(name: str) -> PostgresDatabase:
    """A new database ``name`` (dropped first if it exists), migrated to the newest schema."""
    drop(name)
    _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    found = database(name)
    with open_trail(found.url):  # the project's own migrations
        pass
    return found


def migrate(found: PostgresDatabase) -> None:
    """Upgrade a kept database to the newest schema (a no-op when it is there)."""
    with open_trail(found.url):
        pass


def mark_loaded(found: PostgresDatabase, loaded: Loaded) -> None:
    """Note on the database that its load finished (what `--keep` looks for)."""
    note = f"{LOADED_NOTE} {loaded.jobs} jobs, {loaded.events} events in {loaded.seconds:.1f} s"
    _admin(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(found.name), sql.Literal(note)
        )
    )


def loaded_note(name: str) -> str | None:
    """The note `mark_loaded` left on ``name``; None if it does not exist or was not loaded."""
    found = _admin(
        sql.SQL("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s"),
        (name,),
    )
    note = found[0][0] if found else None
    return str(note) if note and str(note).startswith(LOADED_NOTE) else None


def drop(name: str) -> None:
    _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# ---------------------------------------------------------------------- the log


@dataclass(frozen=True)
class Loaded:
    jobs: int
    events: int
    seconds: float
    """COPY of both tables, the commits included; VACUUM ANALYZE apart."""
    vacuum_seconds: float


def _chunks(jobs: int, worker: int, workers: int) -> Iterator[range]:
    for first in range(worker * CHUNK, jobs, workers * CHUNK):
        yield range(first, min(first + CHUNK, jobs))


def _load_part(conninfo: str, jobs: int, worker: int, workers: int) -> tuple[int, int]:
    """One loader process: every ``workers``-th chunk from chunk ``worker``; (jobs, events)."""
    made_jobs = made_events = 0
    with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
        for chunk in _chunks(jobs, worker, workers):
            histories = [job_history(i) for i in chunk]
            events = sorted((e for h in histories for e in h), key=lambda e: e.occurred_at)
            with cur.copy(COPY_EVENTS) as copy:
                for event in events:
                    copy.write_row(event_row(event))
            with cur.copy(COPY_JOBS) as copy:
                for history in histories:
                    copy.write_row(job_row(history))
            conn.commit()
            made_jobs += len(histories)
            made_events += len(events)
            if worker == 0 and (made_jobs // CHUNK) % 50 == 0:
                print(f"    loaded ~{made_jobs * workers:,} of {jobs:,} jobs", file=sys.stderr)
    return made_jobs, made_events


def load(found: PostgresDatabase, jobs: int, processes: int = 2) -> Loaded:
    """COPY ``jobs`` finished jobs' histories and rows into a migrated, empty database,
    then VACUUM ANALYZE both tables (what autovacuum would do, were it on)."""
    started = time.perf_counter()
    context = multiprocessing.get_context("fork")
    with context.Pool(processes) as pool:
        parts = pool.starmap(
            _load_part, [(found.conninfo, jobs, w, processes) for w in range(processes)]
        )
    seconds = time.perf_counter() - started
    started = time.perf_counter()
    with psycopg.connect(found.conninfo, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE job_events")
        conn.execute("VACUUM ANALYZE job")
    vacuum = time.perf_counter() - started
    return Loaded(
        sum(j for j, _ in parts), sum(e for _, e in parts), seconds, vacuum_seconds=vacuum
    )


# ---------------------------------------------------------------------- what is on disk


@dataclass(frozen=True)
class Footprint:
    jobs: int
    events: int
    relations: list[tuple[str, str | None, int]]
    """(relation, its table if an index, bytes): `SIZES`."""

    @property
    def total(self) -> int:
        """Both tables with their TOAST and every index."""
        return sum(size for _, table, size in self.relations if table is None)

    def table_bytes(self, name: str) -> int:
        """The heap and TOAST of ``name``, without its indexes."""
        whole = next(size for rel, table, size in self.relations if rel == name and not table)
        return whole - self.index_bytes(name)

    def index_bytes(self, name: str) -> int:
        return sum(size for _, table, size in self.relations if table == name)


def footprint(conninfo: str) -> Footprint:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        relations = [(str(r[0]), r[1], int(r[2])) for r in conn.execute(SIZES)]
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM job), (SELECT count(*) FROM job_events)"
        )
        jobs, events = counts.fetchone() or (0, 0)
    return Footprint(int(jobs), int(events), relations)


# ---------------------------------------------------------------------- plans


def explain(conninfo: str, statement: str, params: Any = None) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of ``statement`` on a connection of its own, rolled back."""
    with psycopg.connect(conninfo) as conn:
        found = conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {statement}", params)
        lines = [str(r[0]) for r in found]
        conn.rollback()
    return lines


def print_plan(title: str, lines: list[str]) -> None:
    print(f"  -- {title}")
    for line in lines:
        print(f"     {line}")


def compiled(statement: Any, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A SQLAlchemy statement as PostgreSQL text with psycopg's ``%(name)s`` parameters."""
    from sqlalchemy.dialects import postgresql

    done = statement.compile(
        dialect=postgresql.psycopg.dialect(),  # type: ignore[no-untyped-call]
        compile_kwargs={"render_postcompile": True},
    )
    return str(done), {**done.params, **params}


@contextmanager
def explaining_writes(
    trail: Any, conninfo: str, plans: list[tuple[str, list[str]]]
) -> Iterator[None]:
    """While open, every write an append sends is first explained on a side connection
    (rolled back): the new `job` rows' INSERT (seen by SQLAlchemy) and the pipelined writes
    (`PipelinedWrites.finish`: row locks, row updates, the append lock, the events' INSERT)."""
    from jobtrail.adapters.sql import pg_pipeline
    from sqlalchemy import event

    original = pg_pipeline.PipelinedWrites.finish

    def finish(self: Any) -> None:
        for statement, params in self._statements:
            plans.append((statement.split(" FROM ")[0][:70], explain(conninfo, statement, params)))
        original(self)

    def before(*hook: Any) -> None:
        statement, params = hook[2], hook[3]
        if statement.startswith("INSERT INTO job "):
            plans.append((statement[:70], explain(conninfo, statement, params)))

    pg_pipeline.PipelinedWrites.finish = finish  # type: ignore[method-assign]
    event.listen(trail.engine, "before_cursor_execute", before)
    try:
        yield
    finally:
        pg_pipeline.PipelinedWrites.finish = original  # type: ignore[method-assign]
        event.remove(trail.engine, "before_cursor_execute", before)


def explain_writes(label: str, trail: Any, conninfo: str) -> None:
    """Plans of the claim query, of one claimed job's complete, and of a batch submit of
    100 jobs (needs queued jobs)."""
    from jobtrail.adapters.sql.claim_query import ClaimFilter, unlimited_claim
    from jobtrail.domain.services import JobSpec

    clock = trail.service.clock
    claim = unlimited_claim(ClaimFilter()).with_for_update(skip_locked=True)
    statement, params = compiled(claim, {"now": clock.now(), "limit": 16})
    print_plan(f"{label}: claim query (limit 16)", explain(conninfo, statement, params))
    claimed = trail.queue.claim(1, None, lambda job: job.start("bench-scale", 60, now=clock.now()))
    plans: list[tuple[str, list[str]]] = []
    with explaining_writes(trail, conninfo, plans):
        trail.service.complete(claimed[0].id, claimed[0].attempt, None)
    for title, lines in plans:
        print_plan(f"{label}: complete: {title}", lines)
    plans.clear()
    with explaining_writes(trail, conninfo, plans):
        trail.submit_many([JobSpec("bench_scale_explain", {"n": i}) for i in range(100)])
    for title, lines in plans:
        print_plan(f"{label}: submit_many(100): {title}", lines)


def explain_reads(label: str, conninfo: str) -> None:
    """Plans of the queries behind `jobtrail stats` (its default window, the last 24 h)
    and `jobtrail jobs --status queued`."""
    from datetime import UTC, datetime, timedelta

    from jobtrail.adapters.sql.schema import ROW_COLUMNS, job
    from jobtrail.adapters.sql.stats_query import counts_query, failed_by_code, percentiles_query
    from sqlalchemy import select

    queued = select(*ROW_COLUMNS).order_by(job.c.created_at.desc(), job.c.id).limit(50)
    statement, params = compiled(queued.where(job.c.status == "queued"), {})
    print_plan(f"{label}: jobs --status queued", explain(conninfo, statement, params))
    since = datetime.now(UTC) - timedelta(hours=24)
    for title, query in [
        ("counts", counts_query(since)),
        ("failed by code", failed_by_code(since)),
        ("duration percentiles", percentiles_query(since)),
    ]:
        statement, params = compiled(query, {})
        print_plan(f"{label}: stats, last 24 h: {title}", explain(conninfo, statement, params))


# ---------------------------------------------------------------------- where a run's I/O went

WAL = "(WAL bytes, whole server)"
IO_COUNTERS = f"""
SELECT relname, coalesce(heap_blks_read, 0) + coalesce(toast_blks_read, 0)
FROM pg_statio_user_tables WHERE relname IN ('job', 'job_events')
UNION ALL
SELECT indexrelname, idx_blks_read FROM pg_statio_user_indexes
WHERE relname IN ('job', 'job_events')
UNION ALL
SELECT '{WAL}', pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint
"""
"""Blocks each table and index of the two read into shared buffers (a miss: from the OS
cache or the disk), this database's own counters, and the server's WAL position."""


def io_counters(conninfo: str) -> dict[str, int]:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        return {str(name): int(count) for name, count in conn.execute(IO_COUNTERS)}


@contextmanager
def counting_io(trail: Any, conninfo: str, into: dict[str, int]) -> Iterator[None]:
    """Adds to ``into`` what the block is read and WAL writes. The engine's pooled
    connections are closed at the end: a backend's counters reach the statistics when it
    is idle for a while, or at once when it exits."""
    before = io_counters(conninfo)
    yield
    trail.engine.dispose()
    time.sleep(0.5)
    after = io_counters(conninfo)
    for name, count in after.items():
        into[name] = into.get(name, 0) + count - before.get(name, 0)
