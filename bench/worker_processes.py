"""jobtrail's worker as N processes through its CLI, for bench.worker's throughput part.

``jobtrail worker --until-empty --processes N --concurrency C`` when the CLI has
``--processes``; otherwise N ``jobtrail worker --until-empty --concurrency C`` side by
side, started together. Both run bench.worker's no-op processor (``--app``).

The processes pay for their interpreter and imports before they claim anything, which an
in-process run does not, so the rate is taken from the first claim to the last outcome
(``job.started_at`` and ``job.completed_at``, written by the workers from the same clock);
the time from the launch is reported beside it.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
import time
from typing import IO

import psycopg

from bench.common import REPO, Drain, PostgresDatabase, jobtrail_cli

APP = "bench.worker:noop_registry"
SPAN = (
    "SELECT extract(epoch FROM min(started_at)), extract(epoch FROM max(completed_at)),"
    " count(*) FILTER (WHERE status IN ('completed', 'failed', 'cancelled')) FROM job"
)
TIMEOUT = 600.0


@functools.cache
def cli_has_processes() -> bool:
    """Whether ``jobtrail worker`` takes ``--processes`` (asked once, from its help)."""
    shown = subprocess.run(
        jobtrail_cli("worker", "--help"), cwd=REPO, capture_output=True, text=True, check=True
    )
    return "--processes" in shown.stdout


def commands(processes: int, concurrency: int) -> list[list[str]]:
    base = jobtrail_cli(
        "worker", "--until-empty", "--no-scheduler", "--app", APP, "--concurrency", str(concurrency)
    )
    if cli_has_processes():
        return [[*base, "--processes", str(processes)]]
    return [base] * processes


def run(database: PostgresDatabase, processes: int, concurrency: int) -> tuple[float, float, int]:
    """Runs the queued jobs; (seconds first claim -> last outcome, from launch, terminal)."""
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": database.url}
    with tempfile.TemporaryFile("w+") as log:
        launched = time.time()
        started = [start(command, env, log) for command in commands(processes, concurrency)]
        failed = [p for p in started if p.wait(timeout=TIMEOUT) != 0]
        if failed:
            log.seek(0)
            raise RuntimeError(f"{failed[0].args!r} exited {failed[0].returncode}:\n{log.read()}")
    with psycopg.connect(database.conninfo) as conn:
        found = conn.execute(SPAN).fetchone()
    assert found is not None and found[0] is not None, "no job was claimed"
    first, last, terminal = float(found[0]), float(found[1]), int(found[2])
    return last - first, last - launched, terminal


def start(command: list[str], env: dict[str, str], log: IO[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )


def drain(
    database: PostgresDatabase, processes: int, concurrency: int, jobs: int, enqueue: float
) -> Drain:
    """The run as bench.worker prints it; the time from the launch goes in its note."""
    seconds, from_launch, terminal = run(database, processes, concurrency)
    how = "--processes" if cli_has_processes() else "separate commands"
    note = (
        f"; first claim -> last outcome ({how});"
        f" {jobs / from_launch:,.0f} jobs/s from the launch ({from_launch:.2f} s)"
    )
    setting = f"{processes} processes x concurrency {concurrency}"
    return Drain("jobtrail", setting, jobs, enqueue, seconds, terminal, note)
