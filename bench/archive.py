"""Archiving millions of events against the raw export rate, on PostgreSQL.

``python -m bench.archive [--jobs N] [--keep]``: COPY-loads N finished jobs (default
1,220,000: about 5M events, see `bench.scale_load`), then times, on the same log, three
ways out of it:

* the physical limit: ``COPY (SELECT … ORDER BY position) TO STDOUT``, the rows read and
  dropped;
* the raw export: ``jobtrail export --out FILE`` (the same JSON lines an archive writes);
* the archive: ``jobtrail archive --before 0s --out FILE`` (a seal, the read pass that checks
  the log against it and writes the file, the record, the events removed through the
  archive function and compared with the file, the rows removed), on a copy of the loaded
  database made from it as a template.

It prints events per second and the archive's ratio to both (the goal: at least 0.5× the
raw export), then `jobtrail replay` after the archive (without and with ``--archives``) and
the disk the log and the job table take before and after. ``--keep`` keeps the loaded
database for the next run (loading is the slow part); the archived copy is always dropped.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from bench import scale_load
from bench.common import PostgresDatabase, admin_url

SOURCE = "jobtrail_bench_archive_src"
COPY = "jobtrail_bench_archive_run"
DEFAULT_JOBS = 1_220_000


def loaded(jobs: int, keep: bool) -> PostgresDatabase:
    """The loaded source database: reused with ``--keep`` when it holds ``jobs`` jobs."""
    note = scale_load.loaded_note(SOURCE) if keep else None
    if note and f" {jobs} jobs," in note:
        print(f"reusing {SOURCE}: {note}")
        found = scale_load.database(SOURCE)
        scale_load.migrate(found)
        return found
    found = scale_load.create(SOURCE)
    print(f"loading {jobs:,} finished jobs by COPY …", flush=True)
    done = scale_load.load(found, jobs)
    scale_load.mark_loaded(found, done)
    print(
        f"  {done.events:,} events of {done.jobs:,} jobs in {done.seconds:.1f} s "
        f"({done.events / done.seconds:,.0f} events/s), VACUUM ANALYZE {done.vacuum_seconds:.1f} s"
    )
    return found


def copy_of(source: PostgresDatabase) -> PostgresDatabase:
    scale_load.drop(COPY)
    with psycopg.connect(admin_url(), autocommit=True) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(COPY), sql.Identifier(source.name)
            )
        )
    return scale_load.database(COPY)


def raw_copy(found: PostgresDatabase) -> tuple[int, float]:
    """Rows COPied out in position order, read and dropped: (rows, seconds)."""
    rows = 0
    started = time.perf_counter()
    with psycopg.connect(found.conninfo) as conn, conn.cursor() as cur:
        query = "COPY (SELECT * FROM job_events ORDER BY position) TO STDOUT"
        with cur.copy(query) as copy:
            for block in copy:
                rows += bytes(block).count(b"\n")
    return rows, time.perf_counter() - started


PHASES: list[str] = []
"""The archive's own timing of its steps (its ``-v`` log lines "archive step: … in N s")."""


def timed_cli(found: PostgresDatabase, *args: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "jobtrail", "--db", found.url, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"jobtrail {' '.join(args)} failed: {done.stderr.strip()}")
    PHASES.extend(line for line in done.stderr.splitlines() if "archive step: " in line)
    return seconds, (done.stdout.strip().splitlines() or [""])[-1]


def describe(found: scale_load.Footprint) -> str:
    return (
        f"{found.events:,} events and {found.jobs:,} rows in the log and the job table, "
        f"{found.total / 2**20:,.0f} MiB with their indexes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS)
    parser.add_argument("--keep", action="store_true", help="keep the loaded database")
    args = parser.parse_args()
    source = loaded(args.jobs, args.keep)
    folder = Path(tempfile.mkdtemp(prefix="jobtrail-bench-archive-"))
    try:
        measure(source, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        scale_load.drop(COPY)
        if not args.keep:
            scale_load.drop(SOURCE)


def measure(source: PostgresDatabase, folder: Path) -> None:
    events, copy_seconds = raw_copy(source)
    export_seconds, _ = timed_cli(source, "export", "--out", str(folder / "export.jsonl"))
    (folder / "export.jsonl").unlink()
    run = copy_of(source)
    before = scale_load.footprint(run.conninfo)
    archive_seconds, said = timed_cli(
        run, "-v", "archive", "--before", "0s", "--out", str(folder / "archive.jsonl")
    )
    print(f"  {said}")
    for line in PHASES:
        print(f"    {line[line.index('archive step: ') + 14 :]}")
    after = scale_load.footprint(run.conninfo)
    rates = {
        "COPY TO (the physical limit)": events / copy_seconds,
        "jobtrail export (the raw export)": events / export_seconds,
        "jobtrail archive": events / archive_seconds,
    }
    print(f"\n{events:,} events")
    for name, rate in rates.items():
        print(f"  {name:<34} {rate:>10,.0f} events/s")
    archive_rate = rates["jobtrail archive"]
    print(f"  archive / export: {archive_rate / rates['jobtrail export (the raw export)']:.2f}×")
    print(f"  archive / COPY:   {archive_rate / rates['COPY TO (the physical limit)']:.2f}×")
    print(f"  before: {describe(before)}\n  after:  {describe(after)} (VACUUM reuses the space)")
    plain, verdict = timed_cli(run, "replay")
    print(f"  replay after the archive: {plain:.1f} s, {verdict}")
    with_files, verdict = timed_cli(run, "replay", "--archives", str(folder))
    print(f"  replay --archives: {with_files:.1f} s, {verdict}")


if __name__ == "__main__":
    main()
