"""Queues, concurrency limits and pauses, as workers on several processes meet them.

The limit tests read their verdict from the log: every attempt is an interval from its
`JobStarted` to the event that ends it, and at no moment may more intervals of a limited
type (or key) be open than the limit allows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from datetime import datetime

import pytest
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.sql.control import read_control_log
from jobtrail.domain.errors import InvalidField, NotPaused, UnknownLimit, UnknownQueue
from jobtrail.domain.events import Event, JobStarted
from jobtrail.domain.job import Meta
from jobtrail.domain.services import JobSpec
from jobtrail.processors.engine.settings import WorkerSettings

from tests.helpers import event_count

SLOW = "shot_video_generation"  # a sample processor: sleeps `duration_ms`
ENDS_ATTEMPT = frozenset({"JobCompleted", "JobFailed", "JobRetryScheduled", "JobCancelled"})


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobtrail", "--db", url, *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def attempts(trail: Jobtrail) -> list[tuple[datetime, datetime, Event]]:
    """Every attempt in the log: (started, ended, its JobStarted)."""
    found = []
    for event in trail.store.read_all():
        if isinstance(event, JobStarted):
            found.append(event)
    ended: dict[tuple[str, int], datetime] = {}
    for event in trail.store.read_all():
        if event.type in ENDS_ATTEMPT:
            ended[(event.job_id, event.version)] = event.occurred_at
    result = []
    for start in found:
        end = ended.get((start.job_id, start.version + 1))
        if end is None:  # progress events in between: the first attempt-ending event after
            later = [
                e
                for e in trail.store.load(start.job_id)
                if e.version > start.version and e.type in ENDS_ATTEMPT
            ]
            end = later[0].occurred_at
        result.append((start.occurred_at, end, start))
    return result


def most_open_at_once(intervals: Iterable[tuple[datetime, datetime]]) -> int:
    """The largest number of intervals open at one moment (an end before a start at a tie:
    a slot freed at t may be taken at t)."""
    points = sorted(
        [(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
        key=lambda p: (p[0], p[1]),
    )
    most = current = 0
    for _, step in points:
        current += step
        most = max(most, current)
    return most


def run_workers(url: str, processes: int, *extra: str) -> None:
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "jobtrail", "--db", url, "worker", "--until-empty", *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err


# ---------------------------------------------------------------------- limits


def test_a_type_limit_of_2_holds_across_4_worker_processes(backend_url: str) -> None:
    from jobtrail.adapters.bootstrap import connect

    trail = connect(backend_url)
    trail.flow().set_limit(SLOW, 2, reason="the renderer has two GPUs")
    trail.submit_many([JobSpec(SLOW, {"duration_ms": 5}) for _ in range(200)])
    trail.submit_many([JobSpec("asset_image_generation", {"duration_ms": 5}) for _ in range(40)])
    run_workers(backend_url, 4, "--concurrency", "4")

    limited = [(s, e) for s, e, ev in attempts(trail) if trail.get(ev.job_id)["job_type"] == SLOW]
    others = [(s, e) for s, e, ev in attempts(trail) if trail.get(ev.job_id)["job_type"] != SLOW]
    assert len(limited) == 200
    assert most_open_at_once(limited) == 2  # reached, never exceeded
    assert most_open_at_once(others) > 2  # the unlimited type is not held back
    assert {r["status"] for r in trail.jobs(limit=1000)} == {"completed"}
    trail.close()


def test_a_per_key_limit_of_1_runs_one_job_per_key_at_a_time(backend_url: str) -> None:
    from jobtrail.adapters.bootstrap import connect

    trail = connect(backend_url)
    trail.flow().set_limit(SLOW, 1, per_key=True)
    keys = ["alice", "bob", "carol"]
    trail.submit_many(
        [JobSpec(SLOW, {"duration_ms": 5}, concurrency_key=keys[i % 3]) for i in range(60)]
    )
    run_workers(backend_url, 3, "--concurrency", "4")

    by_key: dict[str, list[tuple[datetime, datetime]]] = {k: [] for k in keys}
    for start, end, event in attempts(trail):
        by_key[trail.get(event.job_id)["concurrency_key"]].append((start, end))
    assert all(len(spans) == 20 for spans in by_key.values())
    assert all(most_open_at_once(spans) == 1 for spans in by_key.values())
    everyone = [span for spans in by_key.values() for span in spans]
    assert most_open_at_once(everyone) > 1  # different keys did run side by side
    trail.close()


@pytest.mark.parametrize("limit", [1, 2])
def test_keys_under_one_limit_are_served_fairly(trail: Jobtrail, limit: int) -> None:
    trail.flow().set_limit(SLOW, limit)
    big = trail.submit_many(
        [JobSpec(SLOW, {"duration_ms": 1}, concurrency_key="big") for _ in range(100)]
    )
    small = trail.submit_many(
        [JobSpec(SLOW, {"duration_ms": 1}, concurrency_key="small") for _ in range(5)]
    )
    trail.worker(WorkerSettings(concurrency=2, until_empty=True, poll_seconds=0.01)).run()

    finished = sorted(trail.jobs(limit=1000), key=lambda r: r["completed_at"])
    order = [r["id"] for r in finished]
    last_small = max(order.index(job_id) for job_id in small)
    assert last_small < 15, f"the small key's last job finished {last_small + 1}th of 105"
    assert set(order) == set(big) | set(small)


def test_a_backlog_longer_than_the_window_starves_no_key(trail: Jobtrail) -> None:
    """600 jobs of one key queued first: the claim's window (256 jobs in claim order) holds
    none of the other keys' jobs, and going round the keys still gives them their turn."""
    trail.flow().set_limit(SLOW, 2)
    for _ in range(3):
        trail.submit_many(
            [JobSpec(SLOW, {"duration_ms": 0}, concurrency_key="big") for _ in range(200)]
        )
    late = [trail.submit(SLOW, {"duration_ms": 0}, concurrency_key=key) for key in ("x", "y", "z")]
    trail.worker(WorkerSettings(concurrency=2, max_jobs=40, poll_seconds=0.01)).run()
    assert {trail.get(job_id)["status"] for job_id in late} == {"completed"}


def test_without_a_limit_one_key_backlog_runs_first_in_claim_order(trail: Jobtrail) -> None:
    """The control case: with no limit nothing reorders the queue (claim order)."""
    big = trail.submit_many([JobSpec(SLOW, {"duration_ms": 1}, concurrency_key="big")] * 30)
    trail.submit_many([JobSpec(SLOW, {"duration_ms": 1}, concurrency_key="small")] * 3)
    trail.worker(WorkerSettings(concurrency=1, prefetch=1, until_empty=True)).run()
    started = [ev.job_id for _, _, ev in sorted(attempts(trail), key=lambda a: a[0])]
    assert set(started[:30]) == set(big)  # one submit: the same time, ordered by id


def test_limits_are_listed_changed_removed_and_recorded(trail: Jobtrail) -> None:
    flow = trail.flow()
    flow.set_limit("render", 3, reason="three GPUs", meta=Meta(actor="ops"))
    flow.set_limit("render", 1, per_key=True)
    flow.set_limit("render", 5)
    assert [(r["job_type"], r["per_key"], r["max_running"]) for r in flow.list_limits()] == [
        ("render", False, 5),
        ("render", True, 1),
    ]
    flow.remove_limit("render", per_key=True)
    with pytest.raises(UnknownLimit):
        flow.remove_limit("render", per_key=True)
    with trail.engine.connect() as conn:
        log = read_control_log(conn)
    assert [(c.action, c.data.get("max_running")) for c in log] == [
        ("limit_set", 3),
        ("limit_set", 1),
        ("limit_set", 5),
        ("limit_removed", None),
    ]
    assert (log[0].actor, log[0].reason) == ("ops", "three GPUs")


@pytest.mark.parametrize("bad", [0, -1, 10**7, True, 2.5])
def test_a_bad_limit_is_refused_and_writes_nothing(trail: Jobtrail, bad: object) -> None:
    with pytest.raises(InvalidField, match="max_running"):
        trail.flow().set_limit("render", bad)  # type: ignore[arg-type]
    assert trail.flow().list_limits() == []
    with trail.engine.connect() as conn:
        assert read_control_log(conn) == []


# ---------------------------------------------------------------------- queues


def test_workers_serve_only_their_queues(trail: Jobtrail) -> None:
    urgent = trail.submit(SLOW, {"duration_ms": 1}, queue="urgent")
    batch = trail.submit(SLOW, {"duration_ms": 1}, queue="batch")
    plain = trail.submit(SLOW, {"duration_ms": 1})
    trail.worker(WorkerSettings(queues=frozenset({"urgent"}), until_empty=True)).run()
    assert trail.get(urgent)["status"] == "completed"
    assert trail.get(batch)["status"] == trail.get(plain)["status"] == "queued"
    assert (trail.get(batch)["queue"], trail.get(plain)["queue"]) == ("batch", "default")
    trail.worker(WorkerSettings(until_empty=True)).run()  # every queue
    assert {trail.get(j)["status"] for j in (batch, plain)} == {"completed"}
    queues = {q["queue"]: q for q in trail.flow().queues()}
    assert queues["urgent"]["jobs"] == {"completed": 1}
    assert set(queues) == {"urgent", "batch", "default"}
    assert trail.stats().as_dict()["by_queue"] == {
        "batch": {"completed": 1},
        "default": {"completed": 1},
        "urgent": {"completed": 1},
    }
    assert [r["id"] for r in trail.jobs(queue="batch")] == [batch]


def test_queue_and_key_are_in_the_row_the_event_and_a_rebuild(trail: Jobtrail) -> None:
    job_id = trail.submit(SLOW, queue="urgent", concurrency_key="customer-7")
    row = trail.get(job_id)
    (queued,) = trail.history(job_id)
    assert queued.data()["queue"] == "urgent"
    assert queued.data()["concurrency_key"] == "customer-7"
    trail.rebuild()
    assert trail.get(job_id) == row
    plain = trail.submit(SLOW)
    assert "queue" not in trail.history(plain)[0].data()  # the default is left out


# ---------------------------------------------------------------------- pauses


def test_pause_stops_claims_within_a_second_and_resume_restarts_them(backend_url: str) -> None:
    from jobtrail.adapters.bootstrap import connect

    trail = connect(backend_url)
    trail.submit_many([JobSpec(SLOW, {"duration_ms": 20}, queue="media")] * 400)
    worker = trail.worker(WorkerSettings(concurrency=2, prefetch=1))
    runner = threading.Thread(target=worker.run)
    runner.start()
    try:
        _wait_for(lambda: _started(trail) >= 5)
        assert cli(backend_url, "pause", "media", "--reason", "incident").returncode == 0
        paused_at = time.monotonic()
        time.sleep(1.0)
        after_a_second = _started(trail)
        time.sleep(1.5)
        assert _started(trail) == after_a_second, "jobs were claimed after the pause"
        assert after_a_second < 400
        resume = cli(backend_url, "resume", "media")
        assert resume.returncode == 0, resume.stderr
        resumed_at = time.monotonic()
        _wait_for(lambda: _started(trail) > after_a_second)
        assert time.monotonic() - resumed_at < 1.5
        assert paused_at < resumed_at
    finally:
        worker.stop()
        runner.join(timeout=60)
    trail.close()


def test_pausing_a_type_holds_it_in_every_queue(trail: Jobtrail) -> None:
    held = trail.submit(SLOW, {"duration_ms": 1}, queue="a")
    other = trail.submit("asset_image_generation", {"duration_ms": 1}, queue="a")
    assert trail.flow().pause(SLOW, kind="type") is True
    assert trail.flow().pause(SLOW, kind="type") is False  # already paused: nothing recorded
    trail.worker(WorkerSettings(until_empty=True)).run()
    assert (trail.get(held)["status"], trail.get(other)["status"]) == ("queued", "completed")
    trail.flow().resume(SLOW, kind="type")
    trail.worker(WorkerSettings(until_empty=True)).run()
    assert trail.get(held)["status"] == "completed"
    with trail.engine.connect() as conn:
        assert [c.action for c in read_control_log(conn)] == ["paused", "resumed"]


def test_pause_and_resume_refuse_what_does_not_exist(trail: Jobtrail) -> None:
    before = event_count(trail)
    with pytest.raises(UnknownQueue):
        trail.flow().pause("nosuch")
    with pytest.raises(UnknownQueue):
        trail.flow().pause("nosuch", kind="type")
    with pytest.raises(NotPaused):
        trail.flow().resume("default")
    assert trail.flow().list_pauses() == []
    assert event_count(trail) == before
    with trail.engine.connect() as conn:
        assert read_control_log(conn) == []


@pytest.mark.parametrize(
    ("args", "expected", "status"),
    [
        (("pause", "nosuch"), "Unknown queue 'nosuch'", 1),
        (("pause", "--type", "nosuch"), "Unknown type 'nosuch'", 1),
        (("resume", "default"), "is not paused", 1),
        (("limit", "set", "render", "-1"), "must be a whole number from 1", 2),
        (("limit", "set", "render", "0"), "must be a whole number from 1", 2),
        (("limit", "remove", "render"), "There is no limit on 'render'", 1),
        (("submit", SLOW, "--queue", " "), "queue", 1),
        (("worker", "--queues", ","), "name at least one queue", 2),
    ],
)
def test_bad_flow_input_is_one_line_and_writes_nothing(
    sqlite_url: str, args: tuple[str, ...], expected: str, status: int
) -> None:
    from jobtrail.adapters.bootstrap import connect

    trail = connect(sqlite_url)
    before = event_count(trail)
    done = cli(sqlite_url, *args)
    assert (done.returncode, done.stdout) == (status, "")
    assert expected in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert event_count(trail) == before
    assert trail.flow().list_limits() == trail.flow().list_pauses() == []
    trail.close()


def test_the_cli_sets_lists_and_shows_queues(sqlite_url: str) -> None:
    assert cli(sqlite_url, "queues").stdout == "no queues: no job was queued yet\n"
    assert cli(sqlite_url, "submit", SLOW, "--queue", "media").returncode == 0
    done = cli(sqlite_url, "limit", "set", SLOW, "2", "--per-key", "--reason", "fair")
    assert done.returncode == 0, done.stderr
    assert cli(sqlite_url, "limit", "list").stdout == f"{SLOW}: at most 2 running per key\n"
    assert cli(sqlite_url, "pause", "media").stdout == "queue media paused\n"
    assert cli(sqlite_url, "queues").stdout == "media (paused): queued 1\n"
    listed = cli(sqlite_url, "jobs", "--queue", "media", "--json")
    assert [row["queue"] for row in json.loads(listed.stdout)] == ["media"]
    assert "queues: media queued 1" in cli(sqlite_url, "stats").stdout


def _started(trail: Jobtrail) -> int:
    return sum(1 for e in trail.store.read_all() if isinstance(e, JobStarted))


def _wait_for(condition: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
