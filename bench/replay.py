"""Replay (verify + rebuild + diff) throughput and memory on PostgreSQL.

The log is generated with the domain itself (`bench.rebuild.job_history`: queued, started,
progressed, then completed, failed, or retried and completed; about four events per job,
every event hashed and chained by `Job`), the events of each chunk of jobs are interleaved
by time as concurrent jobs would be, and both the events and the `job` rows (`fold` of each
history, what live appends write) are loaded with ``COPY``. That is much faster than
appending through the store and gives the same tables.

Then, in the same run: a raw streaming read of the whole `job_events` table (psycopg 3
server-side cursor, 5000 rows per fetch, ordered by job and version as replay's main pass
is, and a plain sequential scan; the same ordered read with replay's JSON loader as well),
and `replay_database` (seal pass, every history, the rebuilt rows diffed with the live
table) with its default worker processes and with one process. Peak memory (VmHWM) of a
replay is measured in a fresh subprocess: in one process for the small and the large log (the
same configuration, so growth with the log would show), and with the default workers for the
large log (the replaying process plus its workers, each counted at the largest one's peak).

    python -m bench.replay [--events 1000000] [--small 100000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from collections.abc import Iterator
from functools import partial

import psycopg
from jobtrail.adapters.audit.reads import lean_json_loads
from jobtrail.adapters.sql.schema import APPENDED_EVENT_COLUMNS
from jobtrail.domain.events import Event
from jobtrail.projections.job_table import COLUMNS, fold
from psycopg.types.json import Jsonb, set_json_loads

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

CHUNK = 1000
ORDERED_READ = "SELECT * FROM job_events ORDER BY job_id, version"
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
            with cur.copy(
                f"COPY job_events ({', '.join(APPENDED_EVENT_COLUMNS)}) FROM STDIN"
            ) as copy:
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


def run_replay(url: str, workers: int | None = None) -> dict[str, object]:
    """One replay of the database at ``url``; the report's counts and the peaks of memory.

    ``workers`` None: as `jobtrail replay` picks them. The workers' peak is the largest one
    (``RUSAGE_CHILDREN``: the children this process waited for).
    """
    from jobtrail.adapters.audit.parallel import default_workers
    from jobtrail.adapters.audit.passes import Scope
    from jobtrail.adapters.audit.replay import replay_database
    from jobtrail.adapters.bootstrap import connect

    trail = connect(url)
    try:
        with trail.engine.connect() as conn:
            used = workers or default_workers(conn)
        report = replay_database(trail.engine, Scope(), workers=used)
    finally:
        trail.close()
    return {
        "clean": report.clean,
        "events": report.events,
        "jobs": report.jobs,
        "problems": report.problem_count,
        "workers": used,
        "peak_rss_kib": peak_rss_kib(),
        "worker_peak_rss_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if used > 1
        else 0,
    }


def replay_in_subprocess(url: str, workers: int | None = None) -> dict[str, object]:
    chosen = [] if workers is None else ["--child-workers", str(workers)]
    out = subprocess.run(
        [sys.executable, "-m", "bench.replay", "--child", url, *chosen],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def time_large(database: PostgresDatabase, events: int) -> tuple[dict[str, float], int]:
    """Seconds of the raw reads and of the replays (peer reads first and last), and workers."""
    timings: dict[str, float] = {}
    with psycopg.connect(database.conninfo) as conn:
        stream(conn, SEQ_SCAN_READ)  # warm-up: the heap into the caches, untimed
        _read(conn, "ordered", ORDERED_READ, events, timings)
        _read(conn, "seq scan", SEQ_SCAN_READ, events, timings)
        set_json_loads(lean_json_loads, conn)
        _read(conn, "ordered, replay's JSON loader", ORDERED_READ, events, timings)
        set_json_loads(json.loads, conn)
    result, timings["replay"] = measure(partial(run_replay, database.url))
    _check(result, events)
    single, timings["replay, 1 process"] = measure(partial(run_replay, database.url, 1))
    _check(single, events)
    with psycopg.connect(database.conninfo) as conn:
        _read(conn, "ordered (again, after the replays)", ORDERED_READ, events, timings)
    return timings, int(result["workers"])  # type: ignore[call-overload]


def _read(
    conn: psycopg.Connection, label: str, query: str, events: int, timings: dict[str, float]
) -> None:
    rows, timings[label] = measure(partial(stream, conn, query))
    if rows != events:
        raise RuntimeError(f"{label}: read {rows} of {events} events")


def _check(result: dict[str, object], events: int) -> None:
    if not result["clean"] or result["events"] != events:
        raise SystemExit(f"replay of the generated log is not clean: {result}")


# ---------------------------------------------------------------------- the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-workers", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_replay(args.child, args.child_workers)))
        return
    print("bench.replay: replay throughput vs a raw streaming read, and its memory, PostgreSQL")
    machine_load("start")
    with temp_postgres() as small, temp_postgres() as large:
        (small_events, _), build_small = measure(partial(make_database, small, args.small))
        (events, jobs), build = measure(partial(make_database, large, args.events))
        timings, workers = time_large(large, events)
        memory = [
            (small_events, replay_in_subprocess(small.url, 1)),
            (events, replay_in_subprocess(large.url, 1)),
            (events, replay_in_subprocess(large.url)),
        ]
    heading(f"PostgreSQL replay: {events:,} events of {jobs:,} jobs")
    row(
        "log generated and COPied in (setup)",
        f"{rate(events, build):,.0f} events/s",
        f"{build:.1f} s",
    )
    for label in (f"replay, {workers} worker processes", "replay, 1 process"):
        seconds = timings["replay" if "worker" in label else label]
        row(f"jobtrail {label}", f"{rate(events, seconds):,.0f} events/s", f"{seconds:.1f} s")
    peers = [label for label in timings if not label.startswith("replay")]
    for label in peers:
        row(
            f"raw streaming read, {label}",
            f"{rate(events, timings[label]):,.0f} rows/s",
            f"{timings[label]:.1f} s",
        )
    for label in peers:
        row(
            f"replay / raw read, {label}", ratio(timings[label], timings["replay"]), "target >= 0.6"
        )
    row(
        "replay, 1 process / raw read, ordered",
        ratio(timings["ordered"], timings["replay, 1 process"]),
    )
    heading("peak RSS of a replay, each in a fresh process (replaying process; largest worker)")
    for count, peaks in memory:
        workers_used = int(peaks["workers"])  # type: ignore[call-overload]
        main_kib, worker_kib = float(peaks["peak_rss_kib"]), float(peaks["worker_peak_rss_kib"])  # type: ignore[arg-type]
        if workers_used == 1:
            row(f"{count:,} events, one process", mib(main_kib))
            continue
        row(
            f"{count:,} events, {workers_used} worker processes",
            mib(main_kib + workers_used * worker_kib),
            f"at most: replaying process {mib(main_kib)} + {workers_used} x {mib(worker_kib)}",
        )
    print(f"  (small log built in {build_small:.1f} s)")
    machine_load("end")


if __name__ == "__main__":
    main()
