"""Cron schedules end to end, on SQLite and PostgreSQL (docs/schedules.md).

Time is a clock the test moves, given to `connect(url, clock=...)`: in this process a
`MovableClock`, in the scheduler processes a `FileClock` that reads the instant the test
writes to a file. What is checked:

- exactly one job per tick with three scheduler processes racing over 20 ticks;
- the catch-up policies after a downtime (latest, all, none) and the cap of ``all``;
- daylight saving time in Europe/Berlin (a 02:30 tick on both change days);
- the API and the CLI (a real process): add, list, remove, each change in the control log
  with its actor and reason, bad input as one line with exit 1 and nothing written;
- the worker's own scheduler (and ``--no-scheduler``), ``scheduler --once``, and a clean
  ``replay`` after scheduled jobs ran.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.schedules import MAX_CATCH_UP, Change, tick_key
from jobtrail.adapters.sql.control import read_control_log
from jobtrail.adapters.sql.schema import control_log, job, job_schedule
from jobtrail.domain.errors import InvalidCommand, InvalidSchedule, UnknownSchedule
from jobtrail.domain.job import Meta
from jobtrail.domain.ports import Clock
from jobtrail.processors.base import JobContext, JobView
from jobtrail.processors.engine.worker import WorkerSettings
from jobtrail.processors.registry import Registry
from sqlalchemy import select, update

from tests.unit.test_cli_imports import loaded

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
OPS = Meta(actor="ops")
STEP_TIMEOUT = 60.0
"""Seconds a scheduler process may take to enqueue a tick (generous: a slow machine)."""


class MovableClock(Clock):
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    def to(self, moment: datetime) -> None:
        self.moment = moment


class FileClock(Clock):
    """The instant written in a file: one clock for several processes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def now(self) -> datetime:
        return datetime.fromisoformat(self.path.read_text())

    def set(self, moment: datetime) -> None:
        write_atomically(self.path, moment.isoformat())


def write_atomically(path: Path, content: str) -> None:
    """Readers see the old content or the new one, never half of it."""
    draft = path.with_suffix(".draft")
    draft.write_text(content)
    os.replace(draft, path)


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock(T0)


@pytest.fixture
def timed(backend_url: str, clock: MovableClock) -> Iterator[Jobtrail]:
    """`trail` on the test's clock."""
    trail = connect(backend_url, clock=clock)
    yield trail
    trail.close()


def keys(trail: Jobtrail) -> list[str]:
    """The idempotency keys of the jobs, in order."""
    with trail.engine.connect() as conn:
        query = select(job.c.idempotency_key).order_by(job.c.idempotency_key)
        return [key for (key,) in conn.execute(query)]


def ticks_of(name: str, *moments: datetime) -> list[str]:
    return sorted(tick_key(name, moment.astimezone(UTC)) for moment in moments)


def snapshot(url: str) -> tuple[list[Any], list[Any]]:
    """Every row of `job_schedule` and `control_log`."""
    trail = connect(url)
    try:
        with trail.engine.connect() as conn:
            schedules = conn.execute(select(job_schedule).order_by(job_schedule.c.name)).all()
            changes = conn.execute(select(control_log).order_by(control_log.c.position)).all()
        return [tuple(r) for r in schedules], [tuple(r) for r in changes]
    finally:
        trail.close()


def run_at(trail: Jobtrail, clock: MovableClock, moment: datetime) -> int:
    clock.to(moment)
    return trail.schedules().run_due()


# ------------------------------------------------------------------ the API


def test_add_list_remove_and_the_control_log(timed: Jobtrail, clock: MovableClock) -> None:
    schedules = timed.schedules()
    change = schedules.add(
        "report",
        "*/5 * * * *",
        "build_report",
        {"kind": "daily"},
        timezone="Europe/Berlin",
        catch_up="all",
        priority=7,
        max_attempts=2,
        queue="reports",
        reason="JIRA-12",
        meta=OPS,
    )
    assert change is Change.ADDED
    (stored,) = schedules.list()
    assert (stored.name, stored.cron, stored.timezone, stored.job_type) == (
        "report",
        "*/5 * * * *",
        "Europe/Berlin",
        "build_report",
    )
    assert (stored.payload, stored.priority, stored.max_attempts, stored.queue) == (
        {"kind": "daily"},
        7,
        2,
        "reports",
    )
    assert (stored.catch_up, stored.last_tick_at, stored.created_at, stored.actor) == (
        "all",
        None,
        T0,
        "ops",
    )
    assert schedules.next_tick(stored) == T0 + timedelta(minutes=5)

    clock.to(T0 + timedelta(minutes=1))
    removed = schedules.remove("report", reason="not needed", meta=Meta(actor="alice"))
    assert removed.name == "report" and schedules.list() == []
    with timed.engine.connect() as conn:
        log = read_control_log(conn)
    assert [(c.action, c.subject, c.actor, c.reason, c.occurred_at) for c in log] == [
        ("schedule_added", "report", "ops", "JIRA-12", T0),
        ("schedule_removed", "report", "alice", "not needed", T0 + timedelta(minutes=1)),
    ]
    assert log[0].data["cron"] == "*/5 * * * *" and log[0].data["payload"] == {"kind": "daily"}
    assert log[1].data["job_type"] == "build_report"


def test_adding_a_name_again_replaces_it_and_the_same_definition_writes_nothing(
    timed: Jobtrail, clock: MovableClock
) -> None:
    schedules = timed.schedules()
    assert schedules.add("report", "0 * * * *", "build_report", meta=OPS) is Change.ADDED
    clock.to(T0 + timedelta(minutes=1))
    assert schedules.add("report", "0 * * * *", "build_report", meta=OPS) is Change.UNCHANGED
    clock.to(T0 + timedelta(minutes=2))
    replaced = schedules.add("report", "30 * * * *", "build_report", reason="half past")
    assert replaced is Change.REPLACED
    stored = schedules.get("report")
    assert (stored.cron, stored.created_at, stored.updated_at, stored.actor) == (
        "30 * * * *",
        T0,
        T0 + timedelta(minutes=2),
        "system",
    )
    with timed.engine.connect() as conn:
        log = read_control_log(conn)
    assert [c.action for c in log] == ["schedule_added", "schedule_replaced"]
    assert log[1].data["cron"] == "30 * * * *" and log[1].data["previous"]["cron"] == "0 * * * *"
    assert log[1].reason == "half past"


@pytest.mark.parametrize(
    ("call", "error", "start"),
    [
        (lambda s: s.remove("nope"), UnknownSchedule, "No schedule named 'nope'"),
        (lambda s: s.add("x", "61 * * * *", "t"), InvalidSchedule, "cron: '61 * * * *'"),
        (lambda s: s.add("x", "* * * * *", "t", timezone="Mars/X"), InvalidSchedule, "timezone:"),
        (lambda s: s.add("x", "* * * * *", "t", catch_up="often"), InvalidSchedule, "catch_up:"),
        (lambda s: s.add("x", "* * * * *", "t", payload=[1]), InvalidCommand, "payload: must"),
        (lambda s: s.add("x", "* * * * *", "t", meta=Meta(actor="")), InvalidCommand, "meta.actor"),
        (lambda s: s.add("x", "* * * * *", "t", reason="r" * 1001), InvalidCommand, "reason:"),
        (lambda s: s.remove("report", reason="r" * 1001), InvalidCommand, "reason:"),
    ],
)
def test_bad_calls_raise_one_line_and_write_nothing(
    trail: Jobtrail,
    backend_url: str,
    call: Callable[[Any], Any],
    error: type[Exception],
    start: str,
) -> None:
    trail.schedules().add("report", "* * * * *", "t")
    before = snapshot(backend_url)
    with pytest.raises(error) as caught:
        call(trail.schedules())
    assert str(caught.value).startswith(start) and "\n" not in str(caught.value)
    assert snapshot(backend_url) == before


# ------------------------------------------------------------------ ticks become jobs


def test_each_tick_becomes_one_job_with_the_schedules_fields(
    timed: Jobtrail, clock: MovableClock
) -> None:
    timed.schedules().add(
        "report", "*/5 * * * *", "build_report", {"n": 1}, priority=3, max_attempts=5, queue="q"
    )
    created = []
    for minute in range(1, 31):
        created.append(run_at(timed, clock, T0 + timedelta(minutes=minute)))
        created.append(timed.schedules().run_due())  # the same instant again: nothing new
    assert sum(created) == 6 and max(created) == 1
    expected = ticks_of("report", *(T0 + timedelta(minutes=m) for m in range(5, 31, 5)))
    assert keys(timed) == expected
    row = timed.jobs(limit=1)[0]
    assert (row["job_type"], row["payload"], row["priority"], row["max_attempts"]) == (
        "build_report",
        {"n": 1},
        3,
        5,
    )
    assert row["queue"] == "q" and row["status"] == "queued"
    (queued,) = timed.history(row["id"])
    assert (queued.actor, queued.correlation_id) == ("scheduler", "schedule:report")
    assert timed.schedules().get("report").last_tick_at == T0 + timedelta(minutes=30)


def test_a_new_or_replaced_schedule_does_not_reach_back(
    timed: Jobtrail, clock: MovableClock
) -> None:
    clock.to(T0 + timedelta(minutes=7))
    timed.schedules().add("report", "*/5 * * * *", "t")
    assert timed.schedules().run_due() == 0
    assert run_at(timed, clock, T0 + timedelta(minutes=10)) == 1
    clock.to(T0 + timedelta(minutes=12))
    timed.schedules().add("report", "* * * * *", "t")  # replaced: every minute from now
    assert run_at(timed, clock, T0 + timedelta(minutes=12, seconds=30)) == 0
    assert run_at(timed, clock, T0 + timedelta(minutes=13)) == 1
    assert keys(timed) == ticks_of("report", T0 + timedelta(minutes=10), T0 + timedelta(minutes=13))


def test_a_removed_schedule_enqueues_nothing_more_and_its_jobs_stay(
    timed: Jobtrail, clock: MovableClock
) -> None:
    timed.schedules().add("report", "* * * * *", "t")
    assert run_at(timed, clock, T0 + timedelta(minutes=1)) == 1
    timed.schedules().remove("report")
    assert run_at(timed, clock, T0 + timedelta(minutes=5)) == 0
    assert keys(timed) == ticks_of("report", T0 + timedelta(minutes=1))


@pytest.mark.parametrize(
    ("catch_up", "after_downtime"),
    [("latest", [30]), ("all", [10, 15, 20, 25, 30]), ("none", [])],
)
def test_downtime_follows_the_catch_up_policy(
    timed: Jobtrail, clock: MovableClock, catch_up: str, after_downtime: list[int]
) -> None:
    """Up at 5 (one tick), down from 6 to 33 (ticks 10…30 missed), up again."""
    timed.schedules().add("report", "*/5 * * * *", "t", catch_up=catch_up)
    assert run_at(timed, clock, T0 + timedelta(minutes=5, seconds=1)) == 1
    back = run_at(timed, clock, T0 + timedelta(minutes=33))
    assert back == len(after_downtime)
    assert timed.schedules().get("report").last_tick_at == T0 + timedelta(minutes=30)
    assert run_at(timed, clock, T0 + timedelta(minutes=35, seconds=20)) == 1  # on time again
    minutes = [5, *after_downtime, 35]
    assert keys(timed) == ticks_of("report", *(T0 + timedelta(minutes=m) for m in minutes))


def test_none_still_enqueues_a_tick_seen_a_little_late(
    timed: Jobtrail, clock: MovableClock
) -> None:
    timed.schedules().add("report", "*/5 * * * *", "t", catch_up="none")
    assert run_at(timed, clock, T0 + timedelta(minutes=5, seconds=59)) == 1
    assert run_at(timed, clock, T0 + timedelta(minutes=11, seconds=1)) == 0  # 61 s late
    assert keys(timed) == ticks_of("report", T0 + timedelta(minutes=5))


def test_all_is_capped_with_a_warning(
    timed: Jobtrail, clock: MovableClock, caplog: pytest.LogCaptureFixture
) -> None:
    timed.schedules().add("report", "* * * * *", "t", catch_up="all")
    later = T0 + timedelta(days=1)  # 1,440 missed minutes
    with caplog.at_level(logging.WARNING, logger="jobtrail.adapters.schedules.scheduler"):
        assert run_at(timed, clock, later) == MAX_CATCH_UP
    assert "more than 1000 ticks were missed; enqueuing the latest 1000" in caplog.text
    found = keys(timed)
    assert len(found) == 1000 and found[-1] == tick_key("report", later)
    assert found[0] == tick_key("report", later - timedelta(minutes=999))


def test_a_failing_schedule_is_logged_once_and_the_others_still_run(
    timed: Jobtrail, clock: MovableClock, caplog: pytest.LogCaptureFixture
) -> None:
    timed.schedules().add("broken", "* * * * *", "t")
    timed.schedules().add("report", "* * * * *", "t")
    with timed.engine.begin() as conn:  # a zone this machine no longer knows
        conn.execute(
            update(job_schedule)
            .where(job_schedule.c.name == "broken")
            .values(timezone="Mars/Olympus")
        )
    schedules = timed.schedules()  # one scheduler, as a loop keeps it
    with caplog.at_level(logging.WARNING, logger="jobtrail.adapters.schedules.scheduler"):
        for minute in (1, 2):
            clock.to(T0 + timedelta(minutes=minute))
            assert schedules.run_due() == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "schedule broken, trying again next round: timezone: unknown time zone "
        "'Mars/Olympus' (give an IANA name such as Europe/Berlin or UTC)."
    ]
    assert keys(timed) == ticks_of("report", T0 + timedelta(minutes=1), T0 + timedelta(minutes=2))


def test_the_loop_runs_in_a_thread_until_stopped(timed: Jobtrail, clock: MovableClock) -> None:
    timed.schedules().add("report", "* * * * *", "t")
    loop = timed.schedules().loop(interval=0.01).start()
    try:
        clock.to(T0 + timedelta(minutes=1))
        wait_for(jobs_at_least(timed, 1), "the loop to enqueue the tick")
    finally:
        loop.stop(timeout=STEP_TIMEOUT)
    assert loop._thread is not None and not loop._thread.is_alive()
    assert loop.created == 1 and keys(timed) == ticks_of("report", T0 + timedelta(minutes=1))


def test_concurrent_adds_of_one_new_name_make_one_schedule(timed: Jobtrail) -> None:
    barrier = threading.Barrier(4)

    def add() -> Change:
        barrier.wait()
        return timed.schedules().add("report", "* * * * *", "t")

    with ThreadPoolExecutor(4) as pool:
        changes = list(pool.map(lambda _: add(), range(4)))
    assert sorted(changes) == [Change.ADDED, *[Change.UNCHANGED] * 3]
    with timed.engine.connect() as conn:
        assert [c.action for c in read_control_log(conn)] == ["schedule_added"]


# ------------------------------------------------------------------ daylight saving time


@pytest.mark.parametrize(
    ("start", "hours", "expected"),
    [
        # spring forward, 2026-03-29: 02:30 does not exist; it runs at 03:00 CEST (01:00Z)
        ("2026-03-28T23:00:00+00:00", 4, ["2026-03-29T01:00:00+00:00"]),
        # fall back, 2026-10-25: 02:30 happens twice; it runs once, in CEST (00:30Z)
        ("2026-10-24T23:00:00+00:00", 4, ["2026-10-25T00:30:00+00:00"]),
    ],
)
def test_a_0230_tick_in_berlin_around_the_clock_changes(
    timed: Jobtrail, clock: MovableClock, start: str, hours: int, expected: list[str]
) -> None:
    begin = datetime.fromisoformat(start)
    clock.to(begin)
    timed.schedules().add("nightly", "30 2 * * *", "t", timezone="Europe/Berlin")
    timed.schedules().add("half-hourly", "*/30 * * * *", "t", timezone="Europe/Berlin")
    for step in range(1, hours * 12 + 1):  # every 5 minutes
        run_at(timed, clock, begin + timedelta(minutes=5 * step))
    found = keys(timed)
    nightly = [k for k in found if k.startswith("schedule:nightly:")]
    assert nightly == [f"schedule:nightly:{tick}" for tick in expected]
    # every half hour of real time, whatever the local clock did
    assert len(found) - len(nightly) == hours * 2


# ------------------------------------------------------------------ several schedulers


def scheduler_process(url: str, clock_file: str, stop_file: str, report_file: str) -> None:
    """One scheduler process: `run_due` on the shared file clock until told to stop."""
    trail = connect(url, clock=FileClock(Path(clock_file)))
    schedules = trail.schedules()
    rounds = created = 0
    try:
        while not os.path.exists(stop_file):
            created += schedules.run_due()
            rounds += 1
            write_atomically(Path(report_file), json.dumps({"rounds": rounds, "created": created}))
            time.sleep(0.01)
    finally:
        trail.close()


def rounds_of(reports: list[Path]) -> list[int]:
    return [int(json.loads(r.read_text())["rounds"]) for r in reports]


def ran_since(reports: list[Path], rounds: list[int]) -> Callable[[], bool]:
    return lambda: all(
        now >= then + 2 for now, then in zip(rounds_of(reports), rounds, strict=True)
    )


def jobs_at_least(trail: Jobtrail, count: int) -> Callable[[], bool]:
    return lambda: len(keys(trail)) >= count


def wait_for(condition: Callable[[], bool], what: str, timeout: float = STEP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_three_scheduler_processes_make_exactly_one_job_per_tick(
    backend_url: str, tmp_path: Path
) -> None:
    clock = FileClock(tmp_path / "clock")
    clock.set(T0)
    trail = connect(backend_url, clock=clock)
    trail.schedules().add("minutely", "* * * * *", "t")
    stop = tmp_path / "stop"
    reports = [tmp_path / f"report-{n}" for n in range(3)]
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=scheduler_process, args=(backend_url, str(clock.path), str(stop), str(r))
        )
        for r in reports
    ]
    for process in processes:
        process.start()
    try:
        wait_for(lambda: all(r.exists() for r in reports), "the processes to start")
        for tick in range(1, 21):
            clock.set(T0 + timedelta(minutes=tick))
            wait_for(jobs_at_least(trail, tick), f"the job of tick {tick}")
            # every process runs twice more at this instant before the clock moves on
            wait_for(ran_since(reports, rounds_of(reports)), "every process to see the tick")
    finally:
        stop.touch()
        for process in processes:
            process.join(STEP_TIMEOUT)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert keys(trail) == ticks_of("minutely", *(T0 + timedelta(minutes=m) for m in range(1, 21)))
    with trail.engine.connect() as conn:
        assert conn.execute(select(job_schedule.c.last_tick_at)).scalar_one() == T0 + timedelta(
            minutes=20
        )
    trail.close()


# ------------------------------------------------------------------ the CLI


def jobtrail(url: str, *args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    """``python -m jobtrail --db url args…`` as a user runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBTRAIL_")}
    done = subprocess.run(
        [sys.executable, "-m", "jobtrail", "--db", url, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def test_schedule_add_list_remove_round_trip(backend_url: str) -> None:
    code, out, err = jobtrail(
        backend_url,
        "schedule",
        "add",
        "report",
        "--cron",
        "30 2 * * *",
        "build_report",
        "--payload",
        '{"kind": "daily"}',
        "--timezone",
        "Europe/Berlin",
        "--catch-up",
        "none",
        "--priority",
        "4",
        "--max-attempts",
        "2",
        "--queue",
        "reports",
        "--actor",
        "ops",
        "--reason",
        "JIRA-12",
    )
    assert code == 0, err
    assert out.startswith("added report: next tick ") and out.rstrip().endswith(":30:00+01:00")
    code, out, err = jobtrail(backend_url, "schedule", "list", "--json")
    assert code == 0, err
    (listed,) = json.loads(out)
    assert {k: listed[k] for k in ("name", "cron", "timezone", "job_type", "payload")} == {
        "name": "report",
        "cron": "30 2 * * *",
        "timezone": "Europe/Berlin",
        "job_type": "build_report",
        "payload": {"kind": "daily"},
    }
    assert (listed["priority"], listed["max_attempts"], listed["queue"]) == (4, 2, "reports")
    assert (listed["catch_up"], listed["actor"], listed["last_tick_at"]) == ("none", "ops", None)
    assert listed["next_tick"].endswith(":30:00.000000+00:00")
    code, out, _ = jobtrail(backend_url, "schedule", "list")
    assert code == 0 and "report" in out and "30 2 * * *" in out and "Europe/Berlin" in out
    code, out, err = jobtrail(
        backend_url, "schedule", "remove", "report", "--actor", "alice", "--reason", "done"
    )
    assert (code, out) == (0, "removed report\n"), err
    assert jobtrail(backend_url, "schedule", "list", "--json")[:2] == (0, "[]\n")
    trail = connect(backend_url)
    with trail.engine.connect() as conn:
        changes = read_control_log(conn)
    trail.close()
    assert [(c.action, c.actor, c.reason) for c in changes] == [
        ("schedule_added", "ops", "JIRA-12"),
        ("schedule_removed", "alice", "done"),
    ]


ADD = ["schedule", "add", "x", "t"]

BAD_INPUT = [
    (["schedule", "remove", "nope"], "No schedule named 'nope'"),
    ([*ADD, "--cron", "61 * * * *"], "cron: '61 * * * *' is not a cron expression (Bad minute)"),
    ([*ADD, "--cron", "* * * *"], "cron: '* * * *' has 4 fields; expected 5"),
    ([*ADD, "--cron", "* * * * *", "--timezone", "Mars/Olympus"], "timezone: unknown time zone"),
    ([*ADD, "--cron", "* * * * *", "--catch-up", "often"], "catch_up: must be one of latest"),
    ([*ADD, "--cron", "* * * * *", "--payload", "{"], "--payload is not valid JSON"),
    ([*ADD, "--cron", "* * * * *", "--payload", "[1]"], "--payload must be a JSON object"),
    ([*ADD, "--cron", "* * * * *", "--payload", '{"a": NaN}'], "payload.a"),
    (["schedule", "add", "x" * 161, "t", "--cron", "* * * * *"], "name: is 161 characters"),
    ([*ADD, "--cron", "* * * * *", "--queue", ""], "queue: must not be empty"),
    ([*ADD, "--cron", "* * * * *", "--actor", ""], "meta.actor: must not be empty"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT)
def test_bad_input_is_one_line_exit_1_and_writes_nothing(
    backend_url: str, argv: list[str], message: str
) -> None:
    setup = connect(backend_url)
    setup.schedules().add("report", "* * * * *", "t")  # so "nothing written" means something
    setup.close()
    before = snapshot(backend_url)
    code, out, err = jobtrail(backend_url, *argv)
    assert (code, out) == (1, ""), err
    assert err.startswith("jobtrail: error: ") and err.count("\n") == 1 and message in err, err
    assert snapshot(backend_url) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["schedule", "add", "x", "t"],  # no --cron
        ["schedule", "add", "x", "t", "--cron", "* * * * *", "--priority", "2147483648"],
        ["schedule", "frobnicate"],
        ["scheduler", "--interval", "0"],
    ],
)
def test_usage_errors_exit_2_in_one_line(sqlite_url: str, argv: list[str]) -> None:
    code, out, err = jobtrail(sqlite_url, *argv)
    assert (code, out) == (2, "") and err.startswith("jobtrail: error: ") and err.count("\n") == 1


@pytest.mark.parametrize(
    "argv", [["schedule", "--help"], ["schedule", "add", "--help"], ["scheduler", "--help"]]
)
def test_schedule_help_loads_none_of_the_heavy_packages(sqlite_url: str, argv: list[str]) -> None:
    assert loaded(argv, sqlite_url) == (0, set())


def add_due(url: str, name: str) -> None:
    """A daily schedule added ten minutes ago whose tick was five minutes ago: one tick is
    due now, and the next one is a day away (so no minute boundary makes another)."""
    now = datetime.now(UTC)
    tick = now - timedelta(minutes=5)
    past = connect(url, clock=MovableClock(now - timedelta(minutes=10)))
    past.schedules().add(name, f"{tick.minute} {tick.hour} * * *", "scheduled_echo", {"n": 1})
    past.close()


def test_scheduler_once_enqueues_the_due_tick(backend_url: str) -> None:
    add_due(backend_url, "report")
    code, _, err = jobtrail(backend_url, "scheduler", "--once")
    assert code == 0 and err.endswith("\nenqueued 1 job(s)\n"), err
    assert "schedule report: enqueued 1 tick(s)" in err  # a long-running command logs at INFO
    code, _, err = jobtrail(backend_url, "scheduler", "--once")
    assert code == 0 and err.endswith("enqueued 0 job(s)\n"), err
    trail = connect(backend_url)
    assert len(keys(trail)) == 1
    trail.close()


PROCESSORS = """
from jobtrail import Registry

registry = Registry()


@registry.processor("scheduled_echo")
def scheduled_echo(job, ctx):
    return job.payload
"""


def test_a_worker_enqueues_due_ticks_and_runs_them(backend_url: str, tmp_path: Path) -> None:
    (tmp_path / "procs.py").write_text(PROCESSORS)
    add_due(backend_url, "report")
    code, _, err = jobtrail(
        backend_url, "worker", "--app", "procs:registry", "--max-jobs", "1", cwd=tmp_path
    )
    assert code == 0 and "completed 1" in err, err
    trail = connect(backend_url)
    (row,) = trail.jobs()
    assert row["status"] == "completed" and row["idempotency_key"].startswith("schedule:report:")
    trail.close()


def test_a_worker_with_no_scheduler_enqueues_nothing(backend_url: str, tmp_path: Path) -> None:
    (tmp_path / "procs.py").write_text(PROCESSORS)
    add_due(backend_url, "report")
    argv = ["worker", "--app", "procs:registry", "--until-empty", "--no-scheduler"]
    code, _, err = jobtrail(backend_url, *argv, cwd=tmp_path)
    assert code == 0 and "claimed 0" in err, err
    trail = connect(backend_url)
    assert trail.jobs() == []
    trail.close()


def echo(job: JobView, ctx: JobContext) -> Any:
    return job.payload


def test_replay_is_clean_after_scheduled_jobs_ran(backend_url: str) -> None:
    now = datetime.now(UTC)
    clock = MovableClock(now - timedelta(minutes=10))
    timed = connect(backend_url, clock=clock)
    timed.schedules().add("report", "*/2 * * * *", "scheduled_echo")
    timed.schedules().add("all", "* * * * *", "scheduled_echo", catch_up="all")
    assert run_at(timed, clock, now) == 1 + 10
    registry = Registry()
    registry.processor("scheduled_echo")(echo)
    worker = connect(backend_url)  # the worker on the real clock
    stats = worker.worker(WorkerSettings(until_empty=True), registry).run()
    worker.close()
    assert stats.completed == len(keys(timed)) == 11
    with timed.engine.begin() as conn:  # forgetting every tick dealt with enqueues no job again
        conn.execute(update(job_schedule).values(last_tick_at=None))
    assert timed.schedules().run_due() == 0 and len(keys(timed)) == 11
    timed.close()
    code, out, err = jobtrail(backend_url, "replay", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["clean"] and report["jobs"] == 11, report["problems"]
