"""`jobtrail worker --processes N` as people run it: the CLI in a subprocess (docs/processes.md).

The supervisor's output (its own lines and its processes') is read as it comes, so a test
can wait for a line, and learn the pid of a process from ``worker process I started: pid P,
worker id W``.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.domain.events import TERMINAL_EVENT_TYPES
from jobtrail.domain.services import JobSpec

from tests.helpers import check_history, check_projection

STARTED = re.compile(r"worker process (\d+) started: pid (\d+), worker id (\S+)")


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class Supervised:
    """`jobtrail worker ARGS` running in its own session (so a test can send its process
    group a terminal's Ctrl-C), with its output collected line by line."""

    def __init__(self, env: dict[str, str], *args: str, cwd: Path | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jobtrail", "worker", *args],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def started(self) -> list[tuple[int, int, str]]:
        """(process number, pid, worker id) of every process started so far."""
        found = (STARTED.search(line) for line in list(self.lines))
        return [(int(m[1]), int(m[2]), m[3]) for m in found if m]

    def pid_of(self, worker_id: str) -> int:
        return next(pid for _, pid, started_as in self.started() if started_as == worker_id)

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def kill_all(self) -> None:
        """After a test that failed with the supervisor running: nothing of it keeps running."""
        if self.process.poll() is not None:
            return
        self.process.kill()
        self.process.wait()
        for _, pid, _ in self.started():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def cli_env(postgres_url: str) -> dict[str, str]:
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": postgres_url, "PYTHONUNBUFFERED": "1"}
    env.pop("JOBTRAIL_APP", None)
    return env


@pytest.fixture
def supervised() -> Iterator[list[Supervised]]:
    started: list[Supervised] = []
    yield started
    for each in started:
        each.kill_all()


def run_to_the_end(
    env: dict[str, str], *args: str, cwd: Path | None = None, timeout: float = 300
) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "jobtrail", "worker", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return done.returncode, done.stdout + done.stderr


def both_running(trail: Jobtrail, job_ids: list[str]) -> bool:
    rows = [trail.get(job_id) for job_id in job_ids]
    return all(row["status"] == "processing" for row in rows)


def assert_each_once(trail: Jobtrail, job_ids: list[str]) -> set[str]:
    """Every job completed exactly once; returns the actors that started them."""
    actors: set[str] = set()
    for job_id in job_ids:
        events = trail.history(job_id)
        check_history(job_id, events)
        check_projection(trail, job_id)
        kinds = [e.type for e in events if e.type != "JobProgressed"]
        assert kinds == ["JobQueued", "JobStarted", "JobCompleted"], (job_id, kinds)
        actors.update(e.actor for e in events if e.type == "JobStarted")
    return actors


@pytest.mark.postgres
def test_two_processes_run_every_job_exactly_once_under_two_worker_ids(
    pg_trail: Jobtrail, cli_env: dict[str, str]
) -> None:
    ids = pg_trail.submit_many(
        [JobSpec("asset_image_generation", {"duration_ms": 100}) for _ in range(200)]
    )
    code, output = run_to_the_end(
        cli_env, "--processes", "2", "--concurrency", "2", "--until-empty"
    )

    assert code == 0, output
    actors = assert_each_once(pg_trail, ids)
    assert len(actors) == 2, (actors, output)  # each process took some of the jobs
    bases = {actor.rsplit("-", 1)[0] for actor in actors}
    assert len(bases) == 1 and {a.rsplit("-", 1)[1] for a in actors} == {"p1", "p2"}, actors
    assert "2 worker processes stopped (exit status 0, 0; 0 restart(s))" in output


def test_two_processes_share_one_sqlite_file(sqlite_url: str) -> None:
    trail = connect(sqlite_url)
    ids = trail.submit_many(
        [JobSpec("asset_image_generation", {"duration_ms": 50}) for _ in range(60)]
    )
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": sqlite_url}
    env.pop("JOBTRAIL_APP", None)
    code, output = run_to_the_end(env, "--processes", "2", "--concurrency", "2", "--until-empty")

    assert code == 0, output
    assert_each_once(trail, ids)
    trail.close()


def test_worker_id_names_the_actor_of_one_worker_and_prefixes_those_of_processes(
    sqlite_url: str,
) -> None:
    trail = connect(sqlite_url)
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": sqlite_url}
    env.pop("JOBTRAIL_APP", None)
    alone = trail.submit("asset_image_generation", {"duration_ms": 10})
    code, output = run_to_the_end(env, "--worker-id", "box-7", "--until-empty")
    assert code == 0, output
    together = trail.submit_many([JobSpec("asset_image_generation", {"duration_ms": 10})] * 4)
    code, output = run_to_the_end(env, "--worker-id", "box-8", "--processes", "2", "--until-empty")
    assert code == 0, output

    assert [e.actor for e in trail.history(alone) if e.type == "JobStarted"] == ["box-7"]
    actors = assert_each_once(trail, together)
    assert actors and actors <= {"box-8-p1", "box-8-p2"}, actors
    trail.close()


def send_sigterm_to_the_supervisor(worker: Supervised) -> None:
    worker.process.send_signal(signal.SIGTERM)


def press_ctrl_c(worker: Supervised) -> None:
    """What a terminal does: SIGINT to the foreground process group."""
    os.killpg(worker.process.pid, signal.SIGINT)


@pytest.mark.postgres
@pytest.mark.parametrize("stop", [send_sigterm_to_the_supervisor, press_ctrl_c])
def test_a_signal_stops_every_process_gracefully_and_hands_running_jobs_back(
    pg_trail: Jobtrail,
    cli_env: dict[str, str],
    supervised: list[Supervised],
    stop: Callable[[Supervised], None],
) -> None:
    slow = pg_trail.submit_many(
        [JobSpec("shot_video_generation", {"duration_ms": 60_000}, max_attempts=3)] * 2
    )
    worker = Supervised(
        cli_env, "--processes", "2", "--concurrency", "1", "--prefetch", "1", "--grace", "1"
    )
    supervised.append(worker)
    wait_for(lambda: both_running(pg_trail, slow), 60, "both jobs to start")
    assert len({pg_trail.get(job_id)["worker_id"] for job_id in slow}) == 2  # one each

    stop(worker)
    code = worker.wait(timeout=60)

    assert code == 0, worker.output
    for job_id in slow:
        row = pg_trail.get(job_id)
        assert (row["status"], row["error_code"]) == ("queued", "worker_shutdown"), worker.output
    assert pg_trail.jobs(status="processing") == []
    assert worker.output.count("jobtrail: SIGTERM: stopping") == 2, worker.output  # once each


@pytest.mark.postgres
def test_a_killed_process_is_started_again_and_its_job_is_reaped_and_completed(
    pg_trail: Jobtrail, cli_env: dict[str, str], supervised: list[Supervised]
) -> None:
    jobs = pg_trail.submit_many(
        [JobSpec("shot_video_generation", {"duration_ms": 4000}, max_attempts=3)] * 2
    )
    worker = Supervised(
        cli_env,
        *("--processes", "2", "--concurrency", "1", "--prefetch", "1"),
        *("--lease", "2", "--heartbeat", "0.5", "--grace", "1"),
    )
    supervised.append(worker)
    wait_for(lambda: both_running(pg_trail, jobs), 60, "both jobs to start")
    victim_job = jobs[0]
    victim = pg_trail.get(victim_job)["worker_id"]

    os.kill(worker.pid_of(victim), signal.SIGKILL)
    wait_for(
        lambda: any(started_as == f"{victim}-r1" for _, _, started_as in worker.started()),
        60,
        "the process to be started again",
    )
    wait_for(lambda: pg_trail.get(victim_job)["status"] == "completed", 90, "the job to complete")
    wait_for(lambda: pg_trail.get(jobs[1])["status"] == "completed", 90, "the other job")
    worker.process.send_signal(signal.SIGTERM)
    code = worker.wait(timeout=60)

    assert code == 0, worker.output
    assert f"(pid {worker.pid_of(victim)}) was killed by SIGKILL" in worker.output
    events = pg_trail.history(victim_job)
    check_history(victim_job, events)
    retry = next(e for e in events if e.type == "JobRetryScheduled")
    assert retry.error_code == "lease_expired"  # type: ignore[attr-defined]
    starters = [e.actor for e in events if e.type == "JobStarted"]
    assert starters[0] == victim and victim not in starters[1:]
    assert sum(e.type in TERMINAL_EVENT_TYPES for e in events) == 1


@pytest.mark.postgres
def test_processes_whose_supervisor_was_killed_stop_gracefully(
    pg_trail: Jobtrail, cli_env: dict[str, str], supervised: list[Supervised]
) -> None:
    slow = pg_trail.submit_many(
        [JobSpec("shot_video_generation", {"duration_ms": 60_000}, max_attempts=3)] * 2
    )
    worker = Supervised(
        cli_env, "--processes", "2", "--concurrency", "1", "--prefetch", "1", "--grace", "1"
    )
    supervised.append(worker)
    wait_for(lambda: both_running(pg_trail, slow), 60, "both jobs to start")

    worker.process.kill()
    wait_for(
        lambda: all(pg_trail.get(job_id)["status"] == "queued" for job_id in slow),
        60,
        "the orphaned processes to hand their jobs back",
    )
    for job_id in slow:
        assert pg_trail.get(job_id)["error_code"] == "worker_shutdown"


@pytest.mark.parametrize("value", ["0", "abc", "65", "-1"])
def test_a_bad_number_of_processes_is_a_one_line_usage_error(value: str) -> None:
    code, output = run_to_the_end({**os.environ}, "--processes", value)
    assert code == 2
    assert output.splitlines() == [
        f"jobtrail: error: argument --processes: must be a whole number from 1 to 64, "
        f"not {value!r} (see `jobtrail worker --help`)"
    ]


def test_a_database_without_schema_is_one_line_and_starts_no_process(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.touch()
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": f"sqlite:///{empty}"}
    code, output = run_to_the_end(env, "--processes", "2")
    assert code == 1
    assert output.splitlines() == [
        "jobtrail: error: The database has no jobtrail schema; run `jobtrail db init` first."
    ]


@pytest.mark.postgres
def test_processes_that_fail_on_starting_twice_stop_everything_with_exit_1(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "no_registry_here.py").write_text("VALUE = 1\n")
    code, output = run_to_the_end(  # a restart loop would run past the timeout
        cli_env, "--processes", "2", "--app", "no_registry_here", cwd=tmp_path, timeout=120
    )

    assert code == 1, output
    lines = output.splitlines()
    assert lines[-1].startswith("jobtrail: error: Worker process ")
    assert "twice in a row" in lines[-1]
    assert sum(1 for line in lines if STARTED.search(line)) <= 4  # each at most twice
    assert "has no attribute 'registry'" in output  # the processes' own reason
