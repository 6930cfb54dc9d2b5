"""Workers on three hosts, one of which loses its network in the middle of the run.

Each host is a network namespace of the test's own (tests/netns.py) running one
`jobtrail worker` process, which reaches a PostgreSQL server of the test's own
(tests/pg_server.py) over its link only. While the third host holds jobs its link is
dropped for three leases: the other two must reap its jobs and run them again, and when the
link comes back its late outcomes must be refused by their fencing token (the attempt).
Everything is checked from outside: SQL on the log and the `job` table, the workers' JSON
log lines and `jobtrail replay`.

Skipped where namespaces cannot be made (not root, no `ip`, a kernel that refuses) or no
PostgreSQL server binaries are found, unless JOBTRAIL_REQUIRE_NETNS=1 (CI): then it fails.

About 380 lines, over the ~300 a module aims at: one scenario (hosts, server, workers, the
cut, the checks from outside) whose parts are used by nothing else.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from jobtrail.adapters.bootstrap import connect
from jobtrail.adapters.sql.appends import APPEND_LOCK_KEY
from jobtrail.domain.events import TERMINAL_EVENT_TYPES
from jobtrail.domain.services import JobSpec

from tests.conftest import REQUIRED, database_url, unavailable
from tests.netns import Host, NetnsUnavailable, Network, check_available
from tests.pg_server import OwnPostgres, ServerUnavailable

NETNS_REQUIRED = os.environ.get("JOBTRAIL_REQUIRE_NETNS") == "1"
REPOSITORY = Path(__file__).resolve().parents[2]
APP = "tests.fixtures.partition_app:registry"

HOSTS = 3
JOBS = 300
NAP_SECONDS = 0.3
CONCURRENCY = 4
LEASE = 2.0
HEARTBEAT = 0.5
CUT_FOR = 3 * LEASE
MAX_ATTEMPTS = 3
REAPED_WITHIN = 60.0
"""How long the other hosts may take to reap the cut-off host's jobs. Usually lease plus
one reap interval, but a host cut off in the middle of a transaction holds its locks until
the server drops its session (its TCP user timeout, 12 s), and a loaded machine is slow: a
generous bound, since the test checks that they are reaped, not how fast."""
FENCED = ("outcome_dropped", "already_finished")
"""The `event` of a worker's JSON log line for an outcome the log refused or absorbed."""


@pytest.fixture
def network() -> Iterator[Network]:
    """`HOSTS` hosts, removed after the test whatever it left behind."""
    with Network() as net:
        try:
            check_available()
            for _ in range(HOSTS):
                net.add_host()
        except NetnsUnavailable as error:
            unavailable(f"no network namespaces for the partition test: {error}", NETNS_REQUIRED)
        yield net


@pytest.fixture
def server(network: Network) -> Iterator[OwnPostgres]:
    """A server of the test's own, listening on every host's link too."""
    try:
        own = OwnPostgres()
    except ServerUnavailable as error:
        unavailable(
            f"cannot start a PostgreSQL server of the test's own: {error}",
            REQUIRED or NETNS_REQUIRED,
        )
    try:
        own.start(also_listen=[host.server_interface for host in network.hosts])
        yield own
    finally:
        own.remove()


@dataclass
class HostWorker:
    """One `jobtrail worker` process in one host, logging JSON lines to a file."""

    host: Host
    worker_id: str
    process: subprocess.Popen[bytes]
    log: Path

    def lines(self) -> list[dict[str, Any]]:
        """The worker's log lines so far (a line being written is left for later)."""
        text = self.log.read_text(errors="replace")
        found = []
        for line in text.splitlines():
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return found

    def fenced(self) -> set[tuple[str, int]]:
        """(job id, attempt) of each outcome of this worker the log refused or absorbed."""
        return {
            (line["job_id"], line["attempt"])
            for line in self.lines()
            if line.get("event") in FENCED
        }


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobtrail", "--db", url, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPOSITORY,
    )


def start_worker(host: Host, port: int, folder: Path) -> HostWorker:
    worker_id = f"partition-{host.namespace}"
    url = f"postgresql://postgres@{host.server_address}:{port}/postgres"
    argv = [
        *("worker", "--app", APP, "--worker-id", worker_id, "--log-format", "json"),
        *("--concurrency", str(CONCURRENCY), "--lease", str(LEASE)),
        *("--heartbeat", str(HEARTBEAT), "--no-scheduler"),
    ]
    log = folder / f"{worker_id}.log"
    with log.open("wb") as out:  # a file, not a pipe: a full pipe would stall the worker
        process = subprocess.Popen(
            host.command([sys.executable, "-m", "jobtrail", "--db", url, *argv]),
            cwd=REPOSITORY,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return HostWorker(host, worker_id, process, log)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def query(url: str, sql: str, *params: object) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return conn.execute(sql, params).fetchall()


def terminal_count(url: str) -> int:
    done = ("completed", "failed", "cancelled")
    return int(query(url, "SELECT count(*) FROM job WHERE status = ANY(%s)", list(done))[0][0])


def held_by(url: str, worker_id: str) -> set[str]:
    rows = query(
        url, "SELECT id FROM job WHERE status = 'processing' AND worker_id = %s", worker_id
    )
    return {row[0] for row in rows}


@dataclass
class Attempt:
    """One attempt of a job as the log tells it."""

    worker_id: str
    ended_by: str = ""
    """The type of the event that ended it (empty while running)."""
    actor: str = ""
    error_code: str | None = None


def attempts(url: str) -> dict[str, dict[int, Attempt]]:
    """Every job's attempts, read from `job_events`."""
    rows = query(
        url,
        "SELECT job_id, type, data, metadata FROM job_events ORDER BY job_id, version",
    )
    found: dict[str, dict[int, Attempt]] = {}
    for job_id, type_, data, metadata in rows:
        of_job = found.setdefault(job_id, {})
        if type_ == "JobStarted":
            of_job[data["attempt"]] = Attempt(data["worker_id"])
        elif "attempt" in data and type_ != "JobProgressed":
            attempt = of_job[data["attempt"]]
            attempt.ended_by, attempt.actor = type_, metadata["actor"]
            attempt.error_code = data.get("error_code")
    return found


def cut_off_while_holding_jobs(
    network: Network, victim: HostWorker, url: str
) -> tuple[set[str], int]:
    """Cut the victim's link once it holds jobs, for `CUT_FOR` seconds or until its jobs
    are reaped if that takes longer; returns the jobs it held and how many jobs the other
    hosts finished meanwhile. Its jobs must be reaped while it is away."""
    wait_for(
        lambda: terminal_count(url) >= 30 and len(held_by(url, victim.worker_id)) >= 4,
        30,
        "the victim to hold jobs in the middle of the run",
    )
    held = held_by(url, victim.worker_id)
    before = terminal_count(url)
    network.cut(victim.host)
    cut_at = time.monotonic()
    wait_for(
        lambda: not held_by(url, victim.worker_id),
        REAPED_WITHIN,
        "the other hosts to reap the cut-off host's jobs",
    )
    time.sleep(max(0.0, cut_at + CUT_FOR - time.monotonic()))
    finished_meanwhile = terminal_count(url) - before
    network.restore(victim.host)
    return held, finished_meanwhile


def stop(workers: list[HostWorker]) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.process.kill()
            worker.process.wait()


def test_a_cut_off_host_s_jobs_are_reaped_elsewhere_and_its_late_outcomes_refused(
    network: Network, server: OwnPostgres, tmp_path: Path
) -> None:
    url = database_url(server.url)
    migrated = cli(url, "db", "init")
    assert migrated.returncode == 0, migrated.stderr
    trail = connect(url)
    trail.submit_many(
        [
            JobSpec("nap", {"n": n, "seconds": NAP_SECONDS}, max_attempts=MAX_ATTEMPTS)
            for n in range(JOBS)
        ]
    )
    trail.close()

    workers = [start_worker(host, server.port, tmp_path) for host in network.hosts]
    victim, others = workers[-1], workers[:-1]
    try:
        held, finished_meanwhile = cut_off_while_holding_jobs(network, victim, url)
        wait_for(lambda: terminal_count(url) == JOBS, 60, "every job to finish")
        wait_for(lambda: bool(victim.fenced()), 30, "the victim's late outcomes")
    finally:
        network.restore(victim.host)  # first: a worker cut off cannot hear SIGTERM's effect
        stop(workers)
    logs = {w.worker_id: w.log.read_text(errors="replace")[-3000:] for w in workers}
    for worker in workers:
        assert worker.process.returncode == 0, logs

    # Every job ended once, completed: a reaped attempt is retried (max attempts 3, and
    # only the victim's attempts can be reaped).
    statuses = dict(query(url, "SELECT status, count(*) FROM job GROUP BY status"))
    assert statuses == {"completed": JOBS}, statuses
    ends = query(
        url,
        "SELECT job_id, count(*) FILTER (WHERE type = ANY(%s)), "
        "count(*) FILTER (WHERE type = 'JobCompleted') FROM job_events GROUP BY job_id",
        sorted(TERMINAL_EVENT_TYPES),
    )
    assert len(ends) == JOBS and {(t, c) for _, t, c in ends} == {(1, 1)}

    # The other hosts reaped the victim's attempts while it was away, and ran them again.
    assert finished_meanwhile >= 20, "the other hosts stalled while one host was cut off"
    history = attempts(url)
    reaped = {
        (job_id, n)
        for job_id, of_job in history.items()
        for n, attempt in of_job.items()
        if attempt.worker_id == victim.worker_id and attempt.error_code == "lease_expired"
    }
    assert {job_id for job_id, _ in reaped} >= held - completed_by(history, victim.worker_id)
    other_ids = {w.worker_id for w in others}
    for job_id, n in reaped:
        attempt = history[job_id][n]
        assert attempt.ended_by == "JobRetryScheduled"
        assert attempt.actor in {f"reaper@{w}" for w in other_ids}, attempt
    rerun_elsewhere = {
        job_id
        for job_id, n in reaped
        if any(a.worker_id in other_ids for k, a in history[job_id].items() if k > n)
    }
    assert rerun_elsewhere, "no reaped job was run again by another host"

    # The victim's late outcomes were refused: each names an attempt the reaper ended.
    fenced = victim.fenced()
    assert fenced and fenced <= reaped, (fenced - reaped, logs[victim.worker_id])
    assert not any(other.fenced() for other in others), logs

    assert query(url, "SELECT count(*) FROM job WHERE status = 'processing'") == [(0,)]
    replayed = cli(url, "replay")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr


def completed_by(history: dict[str, dict[int, Attempt]], worker_id: str) -> set[str]:
    """Jobs an attempt of ``worker_id`` completed (the victim may finish one just before
    the cut)."""
    return {
        job_id
        for job_id, of_job in history.items()
        if any(a.worker_id == worker_id and a.ended_by == "JobCompleted" for a in of_job.values())
    }


HOLD_THE_APPEND_LOCK = """
import sys
from jobtrail.adapters.sql.appends import APPEND_LOCK_KEY
from jobtrail.adapters.sql.engine import create
from sqlalchemy import text

with create(sys.argv[1]).connect() as conn:
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPEND_LOCK_KEY})
    print("locked", flush=True)
    sys.stdin.read()
"""
"""A worker's turn caught by the partition between its pipelined writes and its COMMIT:
the product's engine, holding the lock every append takes, then silent."""
RELEASED_WITHIN = 20.0
"""Seconds after the cut by which the server must have ended the silent session."""


def test_the_server_ends_a_cut_off_host_s_transaction_and_frees_its_locks(
    network: Network, server: OwnPostgres
) -> None:
    """A session of a host that went silent in the middle of a transaction is ended by the
    server within seconds (the engine's `SERVER_KEEPALIVES`), not after the kernel's two
    hours: until then every append of every other host would wait for its lock."""
    host, url = network.hosts[0], database_url(server.url)
    assert cli(url, "db", "init").returncode == 0
    remote = f"postgresql://postgres@{host.server_address}:{server.port}/postgres"
    holder = subprocess.Popen(
        host.command([sys.executable, "-c", HOLD_THE_APPEND_LOCK, remote]),
        cwd=REPOSITORY,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        network.cut(host)
        took = seconds_until_the_append_lock_is_free(url)
        gone = query(
            url, "SELECT count(*) FROM pg_stat_activity WHERE client_addr = %s", host.address
        )
        assert gone == [(0,)], "the cut-off host's session is still there"
        assert took < RELEASED_WITHIN
    finally:
        network.restore(host)
        holder.kill()
        holder.wait()


def seconds_until_the_append_lock_is_free(url: str) -> float:
    """Take and give back the append lock, waiting at most `RELEASED_WITHIN` seconds."""
    started = time.monotonic()
    with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
        conn.execute(f"SET lock_timeout = '{RELEASED_WITHIN:g}s'")
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (APPEND_LOCK_KEY,))
        except psycopg.errors.LockNotAvailable:
            pytest.fail(
                f"the cut-off host's session still held the append lock after "
                f"{RELEASED_WITHIN:g} s: every append waits for it"
            )
        conn.execute("SELECT pg_advisory_unlock(%s)", (APPEND_LOCK_KEY,))
    return time.monotonic() - started
