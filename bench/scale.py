"""Flat costs as the log grows: an empty database against one holding millions of events.

Two PostgreSQL databases, both migrated with the project's migrations: "empty", and "full"
holding ``--jobs`` finished jobs (default 2,500,000: about 10.25M events; made by the
domain, hash-chained, COPied in: `bench.scale_load`). The same probes then run on both,
alternating so that both see the same machine load, and each figure is printed with the
ratio full / empty:

- the worker's start (``jobtrail worker --until-empty`` as a subprocess, one no-op job
  queued): from the launch to the job's ``started_at`` (the worker's clock, same machine);
- claim + complete throughput: ``--drain-jobs`` no-op jobs queued (untimed), then
  bench.worker's in-process worker, concurrency ``--concurrency``, until they are done;
- claim and complete latency: ``--claims`` jobs claimed one at a time
  (`JobQueue.claim`, the worker's claim transaction) and each completed
  (`JobService.complete`), p50 and p99 of each;
- batch submit: bench.submit's ``submit_many`` batches of ``--batch``, alternating;
- ``jobtrail stats`` and ``jobtrail jobs --status queued`` as subprocesses (median of
  ``--cli-runs``) and in this process (`Jobtrail.stats`, `Jobtrail.jobs`); `stats` with the
  window starting when the probes start (the jobs they make, the same on both sides; the
  loaded history finished in 2025, outside it), and with ``--since all`` (every row);
- bytes on disk per job: ``job_events`` and ``job`` with TOAST and every index.

Job and event ids are time-ordered (UUIDv7, `jobtrail.domain.ids`), in the loaded log as in
what the probes make; docs/scale.md has the figures from before, with random ids.
``--explain`` prints EXPLAIN (ANALYZE, BUFFERS) of the hot statements on both: the claim
query, the worker's complete writes, a batch submit's inserts, stats and the queued list.
``--keep`` keeps both databases (named ``jobtrail_scale_empty`` and
``jobtrail_scale_full_<jobs>``) and reuses a full one loaded before, upgraded to the newest
migration (loading 2.5M jobs takes minutes).

    python -m bench.scale [--jobs 2500000] [--keep] [--explain]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

import psycopg
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.domain.job import Job, Outcome

from bench import scale_load
from bench.common import (
    REPO,
    PostgresDatabase,
    count_rows,
    heading,
    jobtrail_cli,
    machine_load,
    measure,
    percentile,
    rate,
    row,
    timed,
    vacuum_analyze,
)
from bench.submit import jobtrail_batch, run_alternating
from bench.worker import NOOP, noop_registry, noop_settings, submit_noops

TABLES = ("job", "job_events")
GOAL = 0.10
WORKER_ID = "bench-scale"
NOOP_DONE = f"SELECT count(*) FROM job WHERE job_type = '{NOOP}' AND status = 'completed'"
STARTED_AT = "SELECT extract(epoch FROM started_at) FROM job WHERE id = %s"
APP = "bench.worker:noop_registry"
T = TypeVar("T")


@dataclass
class Side:
    """One of the two databases, with jobtrail connected to it."""

    label: str
    database: PostgresDatabase
    trail: Jobtrail
    figures: dict[str, float] = field(default_factory=dict)
    io: dict[str, int] = field(default_factory=dict)
    """Blocks read by table and index, and WAL bytes, over the drains (`counting_io`)."""
    drained: int = 0


@dataclass(frozen=True)
class Figure:
    label: str
    unit: str
    higher_is_better: bool


FIGURES = [
    Figure("worker start (launch -> first claim)", "ms", False),
    Figure("claim + complete throughput", "jobs/s", True),
    Figure("claim latency p50", "ms", False),
    Figure("claim latency p99", "ms", False),
    Figure("complete latency p50", "ms", False),
    Figure("complete latency p99", "ms", False),
    Figure("  WAL written per job (drains)", "B", False),
    Figure("  blocks read into shared buffers per job", "", False),
    Figure("batch submit throughput", "jobs/s", True),
    Figure("jobtrail jobs --status queued (CLI)", "ms", False),
    Figure("jobtrail stats --since (CLI, this run's window)", "ms", False),
    Figure("jobtrail stats --since all (CLI)", "ms", False),
    Figure("Jobtrail.jobs('queued') in process", "ms", False),
    Figure("Jobtrail.stats(since) in process", "ms", False),
    Figure("bytes per job on disk", "B", False),
]


# ---------------------------------------------------------------------- the databases


@contextmanager
def databases(args: argparse.Namespace) -> Iterator[tuple[Side, Side]]:
    tag = "" if args.keep else f"_{uuid.uuid4().hex[:8]}"
    empty_name, full_name = f"jobtrail_scale_empty{tag}", f"jobtrail_scale_full_{args.jobs}{tag}"
    with ExitStack() as stack:
        if not args.keep:
            stack.callback(scale_load.drop, full_name)
            stack.callback(scale_load.drop, empty_name)
        empty = scale_load.create(empty_name)
        note = scale_load.loaded_note(full_name) if args.keep else None
        if note is not None:
            full = scale_load.database(full_name)
            scale_load.migrate(full)
            print(f"reusing {full_name} (--keep): {note}")
        else:
            full = scale_load.create(full_name)
            print(f"loading {args.jobs:,} finished jobs into {full_name} ...")
            loaded = scale_load.load(full, args.jobs, args.load_processes)
            scale_load.mark_loaded(full, loaded)
            row(
                "load rate (COPY, domain-made histories)",
                f"{rate(loaded.events, loaded.seconds):,.0f} events/s",
                f"{loaded.events:,} events, {loaded.jobs:,} jobs in {loaded.seconds:.0f} s"
                f" ({args.load_processes} processes); VACUUM ANALYZE {loaded.vacuum_seconds:.0f} s",
            )
        sides = []
        for label, database in (("empty", empty), ("full", full)):
            trail = connect(database.url)
            stack.callback(trail.close)
            sides.append(Side(label, database, trail))
        yield sides[0], sides[1]


def footprints(sides: tuple[Side, Side]) -> None:
    for side in sides:
        found = scale_load.footprint(side.database.conninfo)
        side.figures["bytes per job on disk"] = found.total / max(found.jobs, 1)
        heading(f"on disk, {side.label}: {found.jobs:,} jobs, {found.events:,} events")
        for name, table, size in found.relations:
            what = f"  index of {table}" if table else "  table, TOAST and indexes"
            row(
                f"{name}{what}",
                f"{size / 2**20:,.1f} MiB",
                f"{size / max(found.jobs, 1):,.0f} B/job",
            )


def cancel_leftovers(side: Side) -> None:
    """Cancel the jobs an earlier run on a kept database left queued (its submits), so that
    this run's workers find only their own."""
    with psycopg.connect(side.database.conninfo) as conn:
        ids = [r[0] for r in conn.execute("SELECT id FROM job WHERE status = 'queued'")]
    clock = side.trail.service.clock

    def cancel(job: Job) -> Outcome:
        return job.cancel("bench.scale: left queued by an earlier run", now=clock.now())

    for first in range(0, len(ids), 1000):
        side.trail.service.execute_many({i: cancel for i in ids[first : first + 1000]})
    if ids:
        print(f"  {side.label}: cancelled {len(ids):,} jobs an earlier run left queued")


# ---------------------------------------------------------------------- the probes


def worker_start(side: Side) -> float:
    """Seconds from launching ``jobtrail worker`` to its claim of the one queued job."""
    job_id = side.trail.submit(NOOP, {})
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": side.database.url}
    command = jobtrail_cli("worker", "--until-empty", "--no-scheduler", "--app", APP)
    launched = time.time()
    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True, timeout=120)
    with psycopg.connect(side.database.conninfo) as conn:
        found = conn.execute(STARTED_AT, (job_id,)).fetchone()
    assert found is not None and found[0] is not None, "the worker did not claim the job"
    return float(found[0]) - launched


def drain(side: Side, jobs: int, batch: int, concurrency: int) -> float:
    """Jobs per second of the in-process worker through ``jobs`` no-op jobs queued first."""
    before = count_rows(side.database.conninfo, NOOP_DONE)
    submit_noops(side.trail, jobs, batch)
    vacuum_analyze(side.database.conninfo, TABLES)
    worker = side.trail.worker(noop_settings(concurrency), registry=noop_registry())
    with scale_load.counting_io(side.trail, side.database.conninfo, side.io):
        seconds = timed(worker.run)
    side.drained += jobs
    done = count_rows(side.database.conninfo, NOOP_DONE) - before
    if done != jobs:
        print(f"    WARNING: {side.label}: {done} of {jobs} jobs completed")
    return rate(jobs, seconds)


def claim_and_complete(side: Side) -> tuple[float, float]:
    """Seconds of one claim (the worker's transaction) and of the claimed job's complete."""
    clock = side.trail.service.clock

    def start(job: Job) -> Outcome:
        return job.start(WORKER_ID, 60, now=clock.now())

    claimed, claim = measure(lambda: side.trail.queue.claim(1, None, start))
    if not claimed:
        raise RuntimeError(f"{side.label}: nothing to claim")
    done = claimed[0]
    complete = timed(lambda: side.trail.service.complete(done.id, done.attempt, None))
    return claim, complete


def cli(side: Side, *args: str) -> float:
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": side.database.url, "COLUMNS": "120"}
    command = jobtrail_cli(*args)
    return timed(
        partial(subprocess.run, command, cwd=REPO, env=env, check=True, capture_output=True)
    )


def alternate(sides: tuple[Side, Side], rounds: int, probe: Callable[[Side], T]) -> list[list[T]]:
    """``rounds`` values of ``probe`` on each side, the order swapped every round."""
    values: list[list[T]] = [[], []]
    for number in range(rounds):
        order = (0, 1) if number % 2 == 0 else (1, 0)
        for index in order:
            values[index].append(probe(sides[index]))
    return values


def record(
    sides: tuple[Side, Side], label: str, values: list[list[float]], scale: float = 1
) -> None:
    for side, found in zip(sides, values, strict=True):
        side.figures[label] = statistics.median(found) * scale


# ---------------------------------------------------------------------- the run


def measure_all(sides: tuple[Side, Side], args: argparse.Namespace) -> None:
    heading("measuring (each probe alternates between the two databases)")
    for side in sides:
        cancel_leftovers(side)
    # `stats`' window: from here, what the probes do, the same on both sides (a 24 h window
    # would also hold the jobs earlier runs left in the kept databases, more on one side).
    window = datetime.now(UTC)
    record(sides, FIGURES[0].label, alternate(sides, args.starts, worker_start), 1000)
    print("  worker start: done")
    drains = alternate(
        sides, args.rounds, lambda s: drain(s, args.drain_jobs, args.batch, args.concurrency)
    )
    record(sides, "claim + complete throughput", drains)
    print(f"  drains (jobs/s): empty {drains[0]}, full {drains[1]}")
    for side in sides:
        wal = side.io.pop(scale_load.WAL, 0)
        side.figures["  WAL written per job (drains)"] = wal / side.drained
        side.figures["  blocks read into shared buffers per job"] = (
            sum(side.io.values()) / side.drained
        )
        reads = ", ".join(f"{n} {c / side.drained:.2f}" for n, c in side.io.items() if c)
        print(f"    {side.label}: blocks read per job by relation: {reads or 'none'}")
    for side in sides:
        submit_noops(side.trail, args.claims + 1, args.batch)
        vacuum_analyze(side.database.conninfo, TABLES)
    if args.explain:
        heading("plans of the hot writes (EXPLAIN ANALYZE, BUFFERS; rolled back)")
        for side in sides:
            scale_load.explain_writes(side.label, side.trail, side.database.conninfo)
    pairs = alternate(sides, args.claims, claim_and_complete)
    for side, found in zip(sides, pairs, strict=True):
        claims, completes = [c for c, _ in found], [c for _, c in found]
        for name, values in (("claim", claims), ("complete", completes)):
            for p in (50, 99):
                side.figures[f"{name} latency p{p}"] = percentile(values, p) * 1000
    print("  claim and complete latency: done")
    batches = [jobtrail_batch(side.trail, args.batch) for side in sides]
    totals = run_alternating(batches, args.submit_batches)
    for side, seconds in zip(sides, totals, strict=True):
        side.figures["batch submit throughput"] = rate(args.submit_batches * args.batch, seconds)
    print("  batch submit: done")
    for side in sides:
        vacuum_analyze(side.database.conninfo, TABLES)
    runs = args.cli_runs
    queued = alternate(sides, runs, lambda s: cli(s, "jobs", "--status", "queued"))
    record(sides, "jobtrail jobs --status queued (CLI)", queued, 1000)
    since = window.isoformat()
    stats_cli = alternate(sides, runs, lambda s: cli(s, "stats", "--since", since))
    record(sides, "jobtrail stats --since (CLI, this run's window)", stats_cli, 1000)
    every_row = alternate(sides, runs, lambda s: cli(s, "stats", "--since", "all"))
    record(sides, "jobtrail stats --since all (CLI)", every_row, 1000)
    jobs_in = alternate(sides, runs, lambda s: timed(partial(s.trail.jobs, "queued")))
    record(sides, "Jobtrail.jobs('queued') in process", jobs_in, 1000)
    stats_in = alternate(sides, runs, lambda s: timed(partial(s.trail.stats, window)))
    record(sides, "Jobtrail.stats(since) in process", stats_in, 1000)
    print("  stats and jobs: done")
    if args.explain:
        heading("plans of the reads (EXPLAIN ANALYZE, BUFFERS)")
        for side in sides:
            scale_load.explain_reads(side.label, side.database.conninfo)


def report(sides: tuple[Side, Side], args: argparse.Namespace) -> None:
    empty, full = sides
    heading(f"empty vs full ({args.jobs:,} finished jobs), goal: at most {GOAL:.0%} slower")
    print(f"  {'':<42} {'empty':>14} {'full':>14} {'full/empty':>11}")
    for figure in FIGURES:
        a, b = empty.figures.get(figure.label), full.figures.get(figure.label)
        if a is None or b is None:
            continue
        shown = f"{b / a:>10.2f}x" if a else f"{'n/a':>11}"
        verdict = ""
        if a and b and not figure.label.startswith(" ") and figure.unit != "B":
            slower = (a / b - 1) if figure.higher_is_better else (b / a - 1)
            verdict = "ok" if slower <= GOAL else f"{slower:+.0%} slower"
        print(
            f"  {figure.label:<42} {a:>11,.1f} {figure.unit:<2} {b:>11,.1f} {figure.unit:<2}"
            f" {shown}  {verdict}".rstrip()
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--jobs", type=int, default=2_500_000, help="finished jobs in the full database")
    add("--load-processes", type=int, default=2, help="loader processes")
    add("--keep", action="store_true", help="keep both databases; reuse a loaded full one")
    add("--explain", action="store_true", help="EXPLAIN (ANALYZE, BUFFERS) the hot statements")
    add("--drain-jobs", type=int, default=10_000, help="no-op jobs per worker drain")
    add("--rounds", type=int, default=2, help="worker drains on each database")
    add("--concurrency", type=int, default=4)
    add("--batch", type=int, default=1000, help="jobs per submit_many")
    add("--claims", type=int, default=500, help="jobs claimed and completed one at a time")
    add("--submit-batches", type=int, default=20, help="timed submit_many batches on each")
    add("--starts", type=int, default=3, help="worker starts on each database")
    add("--cli-runs", type=int, default=5, help="runs of each CLI command on each database")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print("bench.scale: the hot paths on an empty database and on a full one, PostgreSQL")
    machine_load("start")
    started = time.monotonic()
    with databases(args) as sides:
        measure_all(sides, args)
        footprints(sides)
        report(sides, args)
    machine_load("end")
    print(f"({time.monotonic() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
