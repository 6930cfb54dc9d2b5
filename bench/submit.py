"""Batch submit throughput on PostgreSQL, against raw ``executemany`` and PgQueuer.

``submit_many`` queues a batch of jobs in one transaction: one `JobQueued` event and one
`job` row per job. The raw peer inserts the same number of rows of similar width (shaped
like an event row) with psycopg's ``executemany``, one commit per batch; PgQueuer's batch
``enqueue`` (asyncpg) queues the same number of jobs, each with a small JSON payload, in one
statement (a queue row and a log row per job). Batches of the three alternate, in one
database, so all see the same load.

    python -m bench.submit [--jobs 50000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import hashlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.domain.services import JobSpec
from psycopg.types.json import Jsonb

from bench.common import (
    heading,
    machine_load,
    open_trail,
    rate,
    ratio,
    row,
    target,
    temp_postgres,
    timed,
)
from bench.pgqueuer_peer import BatchEnqueue

JOB_TYPE = "shot_video_generation"
RAW_TABLE = """
CREATE TABLE bench_raw_submit (
    position bigserial PRIMARY KEY,
    event_id text NOT NULL UNIQUE,
    job_id text NOT NULL,
    version integer NOT NULL,
    type text NOT NULL,
    schema_version integer NOT NULL,
    data jsonb NOT NULL,
    metadata jsonb NOT NULL,
    occurred_at timestamptz NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL
)"""
RAW_INSERT = (
    "INSERT INTO bench_raw_submit (event_id, job_id, version, type, schema_version, data,"
    " metadata, occurred_at, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)

Batch = Callable[[int], float]
"""Submits or inserts batch number ``n``; returns the seconds it took."""


def jobtrail_batch(trail: Jobtrail, size: int) -> Batch:
    def run(number: int) -> float:
        first = number * size
        specs = [JobSpec(JOB_TYPE, {"shot": i}) for i in range(first, first + size)]
        return timed(lambda: trail.submit_many(specs))

    return run


def raw_batch(conn: psycopg.Connection, size: int) -> Batch:
    """Only ``executemany`` and the commit are timed; the rows are built beforehand."""
    conn.execute(RAW_TABLE)
    conn.commit()

    def insert(rows: list[tuple[Any, ...]]) -> None:
        with conn.cursor() as cursor:
            cursor.executemany(RAW_INSERT, rows)
        conn.commit()

    def run(number: int) -> float:
        now = datetime.now(UTC)
        rows = [raw_row(i, now) for i in range(number * size, (number + 1) * size)]
        return timed(lambda: insert(rows))

    return run


def raw_row(shot: int, now: datetime) -> tuple[Any, ...]:
    data = {
        "job_type": JOB_TYPE,
        "payload": {"shot": shot},
        "max_attempts": 3,
        "priority": 0,
        "available_at": now.isoformat(),
        "idempotency_key": None,
    }
    digest = hashlib.sha256(repr(data).encode()).hexdigest()
    return (
        str(uuid.uuid4()),
        str(uuid.uuid4()),
        1,
        "JobQueued",
        1,
        Jsonb(data),
        Jsonb({"actor": "system", "correlation_id": None}),
        now,
        "",
        digest,
    )


def run_alternating(batches: list[Batch], count: int) -> list[float]:
    """Total seconds of each of ``batches`` over ``count`` alternating rounds.

    Round 0 is a warm-up (connections, statement caches) and is not counted.
    """
    totals = [0.0] * len(batches)
    for number in range(count + 1):
        for index, batch in enumerate(batches):
            seconds = batch(number)
            if number:
                totals[index] += seconds
    return totals


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50_000, help="jobs submitted (timed)")
    parser.add_argument(
        "--batch", type=int, default=1000, help="jobs per submit_many / enqueue call"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print("bench.submit: submit_many vs raw executemany and PgQueuer's enqueue, PostgreSQL")
    machine_load("start")
    batches = max(1, args.jobs // args.batch)
    jobs = batches * args.batch
    with (
        temp_postgres() as database,
        open_trail(database.url) as trail,
        psycopg.connect(database.conninfo) as raw_conn,
    ):
        pgqueuer = BatchEnqueue(database, args.batch)
        try:
            batch_runs = [jobtrail_batch(trail, args.batch), raw_batch(raw_conn, args.batch)]
            ours, raw, peer = run_alternating([*batch_runs, pgqueuer], batches)
        finally:
            pgqueuer.close()
    heading(f"PostgreSQL batch submit: {jobs:,} jobs in {batches} batches of {args.batch:,}")
    print("  (batches of the three alternate; one untimed warm-up batch each first)")
    row("jobtrail submit_many", f"{rate(jobs, ours):,.0f} jobs/s", f"{ours:.2f} s")
    row(
        "raw psycopg executemany, commit per batch",
        f"{rate(jobs, raw):,.0f} rows/s",
        f"{raw:.2f} s",
    )
    row("PgQueuer batch enqueue", f"{rate(jobs, peer):,.0f} jobs/s", f"{peer:.2f} s")
    row("ratio jobtrail / raw executemany", ratio(rate(jobs, ours), rate(jobs, raw)))
    row(
        "ratio jobtrail / PgQueuer",
        ratio(rate(jobs, ours), rate(jobs, peer)),
        target(rate(jobs, ours), rate(jobs, peer), 1),
    )
    print("  jobtrail writes two rows per job (the JobQueued event and its job row); the")
    print("  raw peer writes one event-shaped row per job, its rows built before the timer;")
    print("  PgQueuer writes a queue row and a log row per job in one statement (its lists and")
    print("  payloads built before the timer).")
    print("  Not measured in this run (DESIGN.md, same machine): Procrastinate batch enqueue")
    print("  ~16,000 jobs/s; psycopg executemany ~70k rows/s.")
    machine_load("end")


if __name__ == "__main__":
    main()
