"""Rebuild throughput on PostgreSQL, against a raw streaming read of the same log.

Generates a log of jobs with the domain itself (queued, started, progressed, then
completed, failed, or retried and completed: about four events per job), writes it with
``append_batch``, then times ``trail.rebuild()`` and, in the same run, psycopg 3
server-side cursors reading the whole ``job_events`` table in batches of 5000. Checks that
the rebuilt ``job`` table equals the one live appends produced.

    python -m bench.rebuild [--events 300000] [--chunk 500]
"""

from __future__ import annotations

import argparse
import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

import psycopg
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.domain.errors import InsufficientCredits, UpstreamTimeout
from jobtrail.domain.events import Event
from jobtrail.domain.job import Job
from jobtrail.domain.ports import Append
from jobtrail.domain.retry import RetryPolicy

from bench.common import (
    PostgresDatabase,
    heading,
    machine_load,
    measure,
    open_trail,
    rate,
    ratio,
    row,
    temp_postgres,
    timed,
)

JOB_TYPE = "shot_video_generation"
WORKER = "bench-worker"
FETCH_SIZE = 5000
ORDERED_READ = "SELECT * FROM job_events ORDER BY job_id, version"
SEQ_SCAN_READ = "SELECT * FROM job_events"
TEXT_READ = (
    "SELECT position, event_id, job_id, version, type, schema_version, data::text,"
    " metadata::text, occurred_at::text, recorded_at::text, prev_hash, hash"
    " FROM job_events ORDER BY job_id, version"
)
READS = {
    "ordered by job_id, version": ORDERED_READ,
    "seq scan, no ORDER BY": SEQ_SCAN_READ,
    "ordered, columns cast to text": TEXT_READ,
}
"""The raw streaming reads, by label; the first is the one rebuild is compared with."""
CHECKSUM = "SELECT count(*), md5(string_agg(j::text, '' ORDER BY id)) FROM job j"
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
POLICY = RetryPolicy()


# ---------------------------------------------------------------------- the log


def job_history(index: int) -> list[Event]:
    """One job's events: 1 in 10 fails for credits, 1 in 20 retries once, the rest complete."""
    now = EPOCH + timedelta(seconds=index)
    job = Job.submit(str(uuid.uuid4()), JOB_TYPE, {"shot": index}, now=now)
    job.start(WORKER, 60, now=now + timedelta(seconds=1))
    job.report_progress(1, 50, "rendering", now=now + timedelta(seconds=2))
    done = now + timedelta(seconds=3)
    if index % 10 == 0:
        job.fail(InsufficientCredits(), 1, now=done, policy=POLICY)
    elif index % 20 == 1:
        job.fail(UpstreamTimeout(), 1, now=done, policy=POLICY)
        retry_at = (job.available_at or done) + timedelta(seconds=1)
        job.start(WORKER, 60, now=retry_at)
        job.complete(2, {"video": f"shot-{index}.mp4"}, now=retry_at + timedelta(seconds=3))
    else:
        job.complete(1, {"video": f"shot-{index}.mp4"}, now=done)
    return job.pending


def build_chunk(first: int, size: int) -> list[Append]:
    """Appends of the new jobs ``first .. first + size - 1``."""
    return [Append(job_history(i), 0) for i in range(first, first + size)]


def log_chunks(events: int, chunk: int) -> Iterator[list[Append]]:
    """Chunks of ``chunk`` new jobs' appends until at least ``events`` events are made."""
    made = 0
    for first in itertools.count(0, chunk):
        if made >= events:
            return
        appends = build_chunk(first, chunk)
        made += sum(len(a.events) for a in appends)
        yield appends


@dataclass
class LogStats:
    jobs: int = 0
    events: int = 0
    chunks: int = 0
    build_seconds: float = 0.0
    write_seconds: float = 0.0


def write_log(trail: Jobtrail, events: int, chunk: int) -> LogStats:
    """Build the log in memory, ``chunk`` jobs at a time, and append each chunk in one call."""
    stats = LogStats()
    chunks = log_chunks(events, chunk)
    while True:
        appends, seconds = measure(partial(next, chunks, None))
        stats.build_seconds += seconds
        if appends is None:
            return stats
        stats.write_seconds += timed(partial(trail.store.append_batch, appends))
        stats.chunks += 1
        stats.jobs += len(appends)
        stats.events += sum(len(a.events) for a in appends)


# ---------------------------------------------------------------------- raw reads


def stream(conn: psycopg.Connection, query: str) -> int:
    """Rows ``query`` returns, fetched through a server-side cursor in batches."""
    count = 0
    with conn.transaction(), conn.cursor(name="bench_stream") as cursor:
        cursor.execute(query)
        while rows := cursor.fetchmany(FETCH_SIZE):
            count += len(rows)
    return count


def plan(conn: psycopg.Connection, query: str) -> str:
    """The top node of the plan PostgreSQL picks for ``query`` read through a cursor."""
    with conn.transaction():
        found = conn.execute(f"EXPLAIN DECLARE bench_plan CURSOR FOR {query}").fetchone()
    assert found is not None
    return str(found[0]).split("  (cost=")[0]


def checksum(conn: psycopg.Connection) -> tuple[int, str]:
    with conn.transaction():
        found = conn.execute(CHECKSUM).fetchone()
    assert found is not None
    return found[0], found[1]


def vacuum_analyze(database: PostgresDatabase) -> None:
    """What autovacuum would have done to a log this size: visibility map, statistics."""
    with psycopg.connect(database.conninfo, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE job_events")
        conn.execute("VACUUM ANALYZE job")


# ---------------------------------------------------------------------- the run


@dataclass
class Timings:
    reads: dict[str, float]
    rebuild: float
    ordered_plan: str
    rebuilt_rows: int
    before: tuple[int, str]
    after: tuple[int, str]


def time_reads_and_rebuild(trail: Jobtrail, database: PostgresDatabase, events: int) -> Timings:
    reads: dict[str, float] = {}
    with psycopg.connect(database.conninfo) as conn:
        before = checksum(conn)
        ordered_plan = plan(conn, ORDERED_READ)
        stream(conn, SEQ_SCAN_READ)  # warm-up: the heap into the caches, untimed
        for label, query in READS.items():
            rows, reads[label] = measure(partial(stream, conn, query))
            if rows != events:
                raise RuntimeError(f"{label}: read {rows} of {events} events")
        rebuilt_rows, rebuild = measure(trail.rebuild)
        after = checksum(conn)
    return Timings(reads, rebuild, ordered_plan, rebuilt_rows, before, after)


def report(stats: LogStats, timings: Timings) -> None:
    events = stats.events
    heading(f"PostgreSQL rebuild: {events:,} events of {stats.jobs:,} jobs")
    row(
        "log built in memory with the domain",
        f"{rate(events, stats.build_seconds):,.0f} events/s",
        f"{stats.build_seconds:.1f} s (setup, not compared)",
    )
    row(
        "log written with append_batch",
        f"{rate(events, stats.write_seconds):,.0f} events/s",
        f"{stats.write_seconds:.1f} s, {stats.chunks} calls (setup, not compared)",
    )
    row(
        "jobtrail rebuild()",
        f"{rate(events, timings.rebuild):,.0f} events/s",
        f"{timings.rebuild:.2f} s",
    )
    for label, seconds in timings.reads.items():
        row(
            f"raw streaming read, {label}",
            f"{rate(events, seconds):,.0f} events/s",
            f"{seconds:.2f} s",
        )
    print(f"    (raw reads: psycopg 3 server-side cursors, {FETCH_SIZE} rows per fetch;")
    print(f"    plan of the ordered read: {timings.ordered_plan})")
    for label, seconds in timings.reads.items():
        row(f"rebuild / raw read, {label}", ratio(seconds, timings.rebuild))
    print("  Not measured in this run (DESIGN.md): psycopg 3 streaming read ~158k rows/s.")
    report_checksums(stats, timings)


def report_checksums(stats: LogStats, timings: Timings) -> None:
    (rows_before, md5_before), (rows_after, md5_after) = timings.before, timings.after
    same = timings.before == timings.after and timings.rebuilt_rows == stats.jobs
    heading("rebuilt job table vs the table live appends produced")
    row(
        "rows before / rebuilt / after",
        f"{rows_before:,} / {timings.rebuilt_rows:,} / {rows_after:,}",
    )
    row("md5 before", md5_before)
    row("md5 after", md5_after)
    row("identical", "yes" if same else "NO")
    if not same:
        raise SystemExit("the rebuilt job table differs from the live one")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000, help="events in the log (minimum)")
    parser.add_argument("--chunk", type=int, default=500, help="jobs per append_batch call")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print("bench.rebuild: rebuild() throughput vs raw streaming reads, PostgreSQL")
    machine_load("start")
    with temp_postgres() as database, open_trail(database.url) as trail:
        stats = write_log(trail, args.events, args.chunk)
        vacuum_analyze(database)
        timings = time_reads_and_rebuild(trail, database, stats.events)
    report(stats, timings)
    machine_load("end")


if __name__ == "__main__":
    main()
