"""Latency of appending one event with its `job` row update, against one raw commit.

``SqlEventStore.append`` writes the event and updates the job's projection row in one
transaction. The physical limit is one row inserted and committed per transaction on
one connection; both are timed in the same run, in alternating blocks.

    python -m bench.append [--appends 2000] [--backend both]
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.domain.job import Job
from psycopg.types.json import Jsonb

from bench.common import (
    Probe,
    heading,
    machine_load,
    open_trail,
    percentile,
    ratio,
    row,
    run_interleaved,
    sqlite_url,
    temp_postgres,
    temp_sqlite,
)

SCRATCH_COLUMNS = "job_id, version, data, occurred_at"
Namespace = argparse.Namespace


def jobtrail_probe(trail: Jobtrail) -> Probe:
    """Each call appends one `JobProgressed` to a running job; only the append is timed."""
    job_id = trail.submit("shot_video_generation", {"shot": 1})
    trail.service.start(job_id, "bench", 60)
    job = Job.from_history(job_id, trail.store.load(job_id))
    counter = 0

    def probe() -> float:
        nonlocal counter
        counter += 1
        job.pending.clear()
        job.report_progress(job.attempt, counter % 101, now=datetime.now(UTC))
        events = list(job.pending)
        expected = job.version - len(events)
        start = time.perf_counter()
        trail.store.append(events, expected)
        return time.perf_counter() - start

    return probe


def raw_postgres_probe(conn: psycopg.Connection) -> Probe:
    """Each call inserts one row in autocommit mode: one transaction, one commit."""
    conn.execute(
        "CREATE TABLE bench_raw_append (id bigserial PRIMARY KEY, job_id text NOT NULL,"
        " version integer NOT NULL, data jsonb NOT NULL, occurred_at timestamptz NOT NULL)"
    )
    insert = f"INSERT INTO bench_raw_append ({SCRATCH_COLUMNS}) VALUES (%s, %s, %s, %s)"
    job_id = str(uuid.uuid4())
    counter = 0

    def probe() -> float:
        nonlocal counter
        counter += 1
        params = (job_id, counter, Jsonb({"attempt": 1, "percent": counter % 101}), _now())
        start = time.perf_counter()
        conn.execute(insert, params)
        return time.perf_counter() - start

    return probe


def raw_sqlite_probe(conn: sqlite3.Connection) -> Probe:
    """Each call runs BEGIN IMMEDIATE, one INSERT, COMMIT (as jobtrail's writes do)."""
    conn.execute(
        "CREATE TABLE bench_raw_append (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " job_id TEXT NOT NULL, version INTEGER NOT NULL, data TEXT NOT NULL,"
        " occurred_at TEXT NOT NULL)"
    )
    insert = f"INSERT INTO bench_raw_append ({SCRATCH_COLUMNS}) VALUES (?, ?, ?, ?)"
    job_id = str(uuid.uuid4())
    counter = 0

    def probe() -> float:
        nonlocal counter
        counter += 1
        params = (job_id, counter, f'{{"attempt":1,"percent":{counter % 101}}}', _now())
        start = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(insert, params)
        conn.execute("COMMIT")
        return time.perf_counter() - start

    return probe


def _now() -> str:
    return datetime.now(UTC).isoformat()


def open_raw_sqlite(path: Path) -> sqlite3.Connection:
    """A connection with adapters/database.py's pragmas: WAL, synchronous=FULL."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def compare(title: str, trail: Jobtrail, raw: Probe, raw_label: str, args: Namespace) -> None:
    ours, limit = run_interleaved(
        [jobtrail_probe(trail), raw], args.appends, block=args.block, warmup=args.warmup
    )
    heading(f"{title}: {args.appends} appends each, alternating blocks of {args.block}")
    report("jobtrail append (event + job row)", ours)
    report(raw_label, limit)
    row(
        "ratio of medians (jobtrail / raw)",
        ratio(percentile(ours, 50), percentile(limit, 50)),
        f"p99 ratio {ratio(percentile(ours, 99), percentile(limit, 99))}",
    )


def report(label: str, seconds: list[float]) -> None:
    p50, p99 = percentile(seconds, 50) * 1000, percentile(seconds, 99) * 1000
    row(label, f"p50 {p50:7.3f} ms", f"p99 {p99:7.3f} ms  ({1000 / p50:,.0f}/s at p50)")


def bench_sqlite(args: Namespace) -> None:
    with (
        temp_sqlite() as path,
        open_trail(sqlite_url(path)) as trail,
        contextlib.closing(open_raw_sqlite(path)) as raw_conn,
    ):
        raw = raw_sqlite_probe(raw_conn)
        label = "raw sqlite3 insert + commit (WAL, FULL)"
        compare("SQLite", trail, raw, label, args)


def bench_postgres(args: Namespace) -> None:
    with (
        temp_postgres() as database,
        open_trail(database.url) as trail,
        psycopg.connect(database.conninfo, autocommit=True) as raw_conn,
    ):
        raw = raw_postgres_probe(raw_conn)
        label = "raw psycopg autocommit insert"
        compare("PostgreSQL", trail, raw, label, args)
    print("  (DESIGN.md, not measured here: ~1,700 commits/s, one row per transaction)")


BACKENDS: dict[str, Callable[[Namespace], None]] = {
    "sqlite": bench_sqlite,
    "postgres": bench_postgres,
}


def parse_args() -> Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--appends", type=int, default=2000, help="timed appends per side")
    parser.add_argument("--block", type=int, default=100, help="appends per alternating block")
    parser.add_argument("--warmup", type=int, default=50, help="untimed appends per side first")
    parser.add_argument("--backend", choices=[*BACKENDS, "both"], default="both")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print("bench.append: one event + its job row per transaction vs one raw row per commit")
    machine_load("start")
    for name, bench in BACKENDS.items():
        if args.backend in (name, "both"):
            bench(args)
    machine_load("end")


if __name__ == "__main__":
    main()
