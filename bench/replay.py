"""Replay (verify + rebuild + diff) throughput and memory on PostgreSQL.

The log is generated with the domain itself (`bench.rebuild.job_history`: queued, started,
progressed, then completed, failed, or retried and completed; about four events per job,
every event hashed and chained by `Job`), the events of each chunk of jobs are interleaved
by time as concurrent jobs would be, and both the events and the `job` rows (`fold` of each
history, what live appends write) are loaded with ``COPY``. That is much faster than
appending through the store and gives the same tables.

Then, in the same run: a raw streaming read of the whole `job_events` table (psycopg 3
server-side cursor, 5000 rows per fetch, ordered by job and version as replay's main pass
is, and a plain sequential scan), and `replay_database` (seal pass, every history, the
rebuilt rows diffed with the live table). Peak memory (VmHWM) of a replay is measured in a
fresh subprocess for a small and for the large log.

    python -m bench.replay [--events 1000000] [--small 100000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from functools import partial

import psycopg
from psycopg.types.json import Jsonb

from bench.common import (
    PostgresDatabase,
    heading,
    machine_load,
    measure,
    mib,
    open_trail,
    peak_rss_kib,
    rate,
    ratio,
    row,
    temp_postgres,
)
from bench.rebuild import SEQ_SCAN_READ, job_history, stream, vacuum_analyze
from domain.events import Event
from projections.job_table import COLUMNS, fold

CHUNK = 1000
ORDERED_READ = "SELECT * FROM job_events ORDER BY job_id, version"
EVENT_COLUMNS = (
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
JSON_COLUMNS = frozenset({"payload", "result"})


# ---------------------------------------------------------------------- the log


def histories(events: int) -> Iterator[list[list[Event]]]:
    """Chunks of ``CHUNK`` jobs' histories until at least ``events`` events are made."""
    made, index = 0, 0
    while made < events:
        chunk = [job_history(i) for i in range(index, index + CHUNK)]
        index += CHUNK
        made += sum(len(h) for h in chunk)
        yield chunk


def event_row(e: Event) -> tuple[object, ...]:
    return (
        e.event_id,
        e.job_id,
        e.version,
        e.type,
        e.schema_version,
        Jsonb(e.data()),
        Jsonb(e.metadata()),
        e.occurred_at,
        e.prev_hash,
        e.hash,
    )


def job_row(events: list[Event]) -> tuple[object, ...]:
    values = fold(events)
    return tuple(
        Jsonb(values[c]) if c in JSON_COLUMNS and values[c] is not None else values[c]
        for c in COLUMNS
    )


def load_log(database: PostgresDatabase, events: int) -> tuple[int, int]:
    """COPY a generated log and its `job` rows in; returns (events, jobs)."""
    total_events = total_jobs = 0
    with psycopg.connect(database.conninfo) as conn, conn.cursor() as cur:
        for chunk in histories(events):
            interleaved = sorted(
                (e for history in chunk for e in history), key=lambda e: e.occurred_at
            )
            with cur.copy(f"COPY job_events ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
                for e in interleaved:
                    copy.write_row(event_row(e))
            with cur.copy(f"COPY job ({', '.join(COLUMNS)}) FROM STDIN") as copy:
                for history in chunk:
                    copy.write_row(job_row(history))
            conn.commit()
            total_events += len(interleaved)
            total_jobs += len(chunk)
    return total_events, total_jobs


def make_database(database: PostgresDatabase, events: int) -> tuple[int, int]:
    with open_trail(database.url):  # the schema
        pass
    counts = load_log(database, events)
    vacuum_analyze(database)
    return counts


# ---------------------------------------------------------------------- replay


def run_replay(url: str) -> dict[str, object]:
    """One replay of the database at ``url``; the report's counts and this process's peak."""
    from adapters.api import connect
    from adapters.replay import Scope, replay_database

    trail = connect(url)
    try:
        report = replay_database(trail.engine, Scope())
    finally:
        trail.close()
    return {
        "clean": report.clean,
        "events": report.events,
        "jobs": report.jobs,
        "problems": report.problem_count,
        "peak_rss_kib": peak_rss_kib(),
    }


def replay_in_subprocess(url: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.replay", "--child", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def time_large(database: PostgresDatabase, events: int) -> dict[str, float]:
    timings: dict[str, float] = {}
    with psycopg.connect(database.conninfo) as conn:
        stream(conn, SEQ_SCAN_READ)  # warm-up: the heap into the caches, untimed
        for label, query in (("ordered", ORDERED_READ), ("seq scan", SEQ_SCAN_READ)):
            rows, timings[label] = measure(partial(stream, conn, query))
            if rows != events:
                raise RuntimeError(f"{label}: read {rows} of {events} events")
    result, timings["replay"] = measure(partial(run_replay, database.url))
    if not result["clean"] or result["events"] != events:
        raise SystemExit(f"replay of the generated log is not clean: {result}")
    return timings


# ---------------------------------------------------------------------- the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_replay(args.child)))
        return
    print("bench.replay: replay throughput vs a raw streaming read, and its memory, PostgreSQL")
    machine_load("start")
    with temp_postgres() as small, temp_postgres() as large:
        (small_events, _), build_small = measure(partial(make_database, small, args.small))
        (events, jobs), build = measure(partial(make_database, large, args.events))
        timings = time_large(large, events)
        memory_small = replay_in_subprocess(small.url)
        memory_large = replay_in_subprocess(large.url)
    heading(f"PostgreSQL replay: {events:,} events of {jobs:,} jobs")
    row(
        "log generated and COPied in (setup)",
        f"{rate(events, build):,.0f} events/s",
        f"{build:.1f} s",
    )
    row(
        "jobtrail replay (seals, histories, diff)",
        f"{rate(events, timings['replay']):,.0f} events/s",
        f"{timings['replay']:.1f} s",
    )
    for label in ("ordered", "seq scan"):
        row(
            f"raw streaming read, {label}",
            f"{rate(events, timings[label]):,.0f} rows/s",
            f"{timings[label]:.1f} s",
        )
    for label in ("ordered", "seq scan"):
        row(
            f"replay / raw read, {label}", ratio(timings[label], timings["replay"]), "target >= 0.6"
        )
    heading("peak RSS of a replay, each in a fresh process")
    row(f"{small_events:,} events", mib(float(memory_small["peak_rss_kib"])))  # type: ignore[arg-type]
    row(f"{events:,} events", mib(float(memory_large["peak_rss_kib"])))  # type: ignore[arg-type]
    print(f"  (small log built in {build_small:.1f} s)")
    machine_load("end")


if __name__ == "__main__":
    main()
