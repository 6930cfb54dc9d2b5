"""Retry with lineage on both backends: `jobtrail retry` as a real process, the API, the
worker running a retry, and `jobtrail replay` on the log afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.sql.schema import job, job_events
from jobtrail.domain.errors import InsufficientCredits, InvalidInput, UpstreamTimeout
from jobtrail.domain.job import Meta
from jobtrail.processors.base import JobContext, JobView
from jobtrail.processors.engine.worker import WorkerSettings
from jobtrail.processors.registry import Registry
from sqlalchemy import func, select

from tests.helpers import SetClock, check_history, check_projection, event_count, jobtrail_process

T1 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T2 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


jobtrail = jobtrail_process


def failed(trail: Jobtrail, job_type: str = "render", error: Any = None) -> str:
    """A job that failed for good (from queued, as an operator or an unknown type fails it)."""
    job_id = trail.submit(
        job_type, {"shot": 7}, max_attempts=4, priority=5, concurrency_key="customer-9"
    )
    trail.service.fail(job_id, error or InsufficientCredits(), attempt=None)
    assert trail.get(job_id)["status"] == "failed"
    return job_id


def stored_events(trail: Jobtrail, job_id: str) -> list[tuple[Any, ...]]:
    """The job's rows of the log, every column, as stored."""
    query = select(job_events).where(job_events.c.job_id == job_id).order_by(job_events.c.version)
    with trail.engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def retries_of(trail: Jobtrail, job_id: str) -> list[str]:
    with trail.engine.connect() as conn:
        return list(conn.execute(select(job.c.id).where(job.c.retry_of == job_id)).scalars())


def assert_replay_clean(url: str) -> None:
    done = jobtrail(url, "replay")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "clean: no problems found" in done.stdout


# ------------------------------------------------------------------ concurrency


def test_concurrent_retries_from_threads_make_one_new_job(
    trail: Jobtrail, backend_url: str
) -> None:
    original = failed(trail)
    before = stored_events(trail, original)
    row_before = trail.get(original)
    start = threading.Barrier(6)
    results: list[str] = []
    errors: list[BaseException] = []

    def retry() -> None:
        mine = connect(backend_url)
        try:
            start.wait()
            results.append(mine.retry(original, reason="upstream fixed", meta=Meta(actor="ops")))
        except BaseException as error:  # reported below, not lost in the thread
            errors.append(error)
        finally:
            mine.close()

    threads = [threading.Thread(target=retry) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert len(results) == 6 and len(set(results)) == 1
    (new_id,) = retries_of(trail, original)
    assert results[0] == new_id
    assert stored_events(trail, original) == before  # the original's log, byte for byte
    assert trail.get(original) == row_before
    new_events = trail.history(new_id)
    assert [e.type for e in new_events] == ["JobQueued"]
    assert (new_events[0].retry_of, new_events[0].actor) == (original, "ops")  # type: ignore[attr-defined]
    check_history(new_id, new_events)
    check_projection(trail, new_id)
    assert_replay_clean(backend_url)


def test_two_processes_retrying_at_once_make_one_new_job(trail: Jobtrail, backend_url: str) -> None:
    original = failed(trail)
    before = stored_events(trail, original)
    env = {**os.environ}
    env.pop("JOBTRAIL_DATABASE_URL", None)
    command = [sys.executable, "-m", "jobtrail", "--db", backend_url, "retry", original]
    processes = [
        subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120) for process in processes]

    assert [p.returncode for p in processes] == [0, 0], outputs
    (new_id,) = retries_of(trail, original)
    assert [out for out, _ in outputs] == [f"{new_id}\n", f"{new_id}\n"]
    assert stored_events(trail, original) == before
    assert_replay_clean(backend_url)


# ------------------------------------------------------------------- the worker


def test_the_retry_runs_on_a_worker_and_completes(trail: Jobtrail, backend_url: str) -> None:
    """The first run fails for good (a user error); once fixed, its retry completes."""
    registry = Registry()
    runs: list[str] = []

    @registry.processor("flaky_render")
    def flaky_render(job: JobView, ctx: JobContext) -> dict[str, Any]:
        runs.append(job.id)
        if len(runs) == 1:
            raise InvalidInput("the storyboard was missing a shot")
        return {"frames": job.payload["shot"] * 24, "retry_of": job.id}

    settings = WorkerSettings(until_empty=True, poll_seconds=0.01)
    original = trail.submit("flaky_render", {"shot": 2}, max_attempts=2, priority=1)
    trail.worker(settings, registry).run()
    assert trail.get(original)["status"] == "failed"
    before = stored_events(trail, original)

    new_id = trail.retry(original, reason="shot added")
    trail.worker(settings, registry).run()

    assert runs == [original, new_id]
    row = trail.get(new_id)
    assert (row["status"], row["retry_of"], row["attempt"]) == ("completed", original, 1)
    assert row["result"] == {"frames": 48, "retry_of": new_id}
    assert (row["priority"], row["max_attempts"], row["payload"]) == (1, 2, {"shot": 2})
    assert [e.type for e in trail.history(new_id)][-1] == "JobCompleted"
    assert stored_events(trail, original) == before
    check_projection(trail, new_id)
    assert_replay_clean(backend_url)

    shown = jobtrail(backend_url, "show", original)
    assert f"retried as {new_id} (completed)" in shown.stdout


# ------------------------------------------------------------- show and history


def test_show_and_history_point_both_ways(trail: Jobtrail, backend_url: str) -> None:
    original = failed(trail)
    new_id = trail.retry(original, reason="credits topped up")

    old_shown = jobtrail(backend_url, "show", original)
    assert old_shown.returncode == 0, old_shown.stderr
    assert f"retried as {new_id} (queued)" in old_shown.stdout
    new_shown = jobtrail(backend_url, "show", new_id)
    assert f"retry of {original} (failed)" in new_shown.stdout

    history = jobtrail(backend_url, "history", new_id).stdout.splitlines()
    (queued,) = [line for line in history if "JobQueued" in line]
    assert f"retry of {original}" in queued
    assert "reason: credits topped up" in queued
    old_history = jobtrail(backend_url, "history", original).stdout
    assert "retry of" not in old_history and new_id not in old_history

    old_json = json.loads(jobtrail(backend_url, "show", original, "--json").stdout)
    assert old_json["retries"] == [{"id": new_id, "status": "queued"}]
    assert old_json["retry_of"] is None
    new_json = json.loads(jobtrail(backend_url, "show", new_id, "--json").stdout)
    assert (new_json["retry_of"], new_json["retries"]) == (original, [])


# ------------------------------------------------------------- refused requests


@pytest.mark.parametrize("state", ["queued", "processing"])
def test_retrying_a_job_that_has_not_finished_is_refused(
    trail: Jobtrail, backend_url: str, state: str
) -> None:
    job_id = trail.submit("render")
    if state == "processing":
        trail.service.start(job_id, "w1", 30)
    events = event_count(trail)

    done = jobtrail(backend_url, "retry", job_id)

    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr == (
        f"jobtrail: error: Invalid command: job {job_id} is {state}: only a finished job "
        "(completed, failed or cancelled) can be retried.\n"
    )
    assert event_count(trail) == events


def test_one_unfinished_job_among_several_refuses_them_all(
    trail: Jobtrail, backend_url: str
) -> None:
    finished, queued = failed(trail), trail.submit("render")
    events = event_count(trail)
    done = jobtrail(backend_url, "retry", finished, queued)
    assert done.returncode == 1 and f"job {queued} is queued" in done.stderr
    assert event_count(trail) == events and retries_of(trail, finished) == []


@pytest.mark.parametrize(
    ("job_id", "message"),
    [
        ("00000000-0000-4000-8000-000000000000", "No job with id 00000000-0000-4000-8000-"),
        ("not-a-job", "'not-a-job' is not a job id"),
    ],
)
def test_an_unknown_or_malformed_job_id_is_one_line(
    trail: Jobtrail, backend_url: str, job_id: str, message: str
) -> None:
    failed(trail)
    events = event_count(trail)
    done = jobtrail(backend_url, "retry", job_id)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("jobtrail: error: ") and message in done.stderr
    assert done.stderr.count("\n") == 1
    assert event_count(trail) == events


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--since", "yesterday"], 2, "argument --since: 'yesterday' is not an ISO 8601 time"),
        (["--since", "2026-13-01"], 2, "argument --since: '2026-13-01' is not an ISO 8601 time"),
        (["--since", T1.isoformat(), "--until", T1.isoformat()], 1, "until: must be later"),
        (["--since", T1.isoformat(), "--status", "queued"], 2, "argument --status: invalid"),
        (["--since", T1.isoformat(), "--limit", "0"], 2, "argument --limit: must be"),
        ([], 2, "give job ids to retry, or --since TIME"),
        (["--type", "render"], 2, "give job ids to retry, or --since TIME"),
        (["{job}", "--since", T1.isoformat()], 2, "give job ids or bulk options"),
        (["{job}", "--dry-run"], 2, "give job ids or bulk options"),
    ],
)
def test_bad_bulk_arguments_are_one_line_and_write_nothing(
    trail: Jobtrail, backend_url: str, args: list[str], code: int, message: str
) -> None:
    original = failed(trail)
    events = event_count(trail)
    done = jobtrail(backend_url, "retry", *(a.replace("{job}", original) for a in args))
    assert done.returncode == code, done.stderr
    assert done.stderr.startswith("jobtrail: error: ") and message in done.stderr
    assert done.stderr.count("\n") == 1 and done.stdout == ""
    assert event_count(trail) == events


# -------------------------------------------------------------------------- bulk


@pytest.fixture
def mixed(trail: Jobtrail) -> dict[str, str]:
    """Finished jobs of two types and two codes, at two times, and one still queued."""
    trail.service.clock = SetClock(T1)
    jobs = {"early": failed(trail)}
    trail.service.clock = SetClock(T2)
    jobs["late"] = failed(trail)
    jobs["other_type"] = failed(trail, "export")
    jobs["other_code"] = failed(trail, error=UpstreamTimeout())
    jobs["cancelled"] = trail.submit("render")
    trail.cancel(jobs["cancelled"], "by mistake")
    jobs["queued"] = trail.submit("render")
    return jobs


def test_a_dry_run_prints_what_would_be_retried_and_writes_nothing(
    trail: Jobtrail, backend_url: str, mixed: dict[str, str]
) -> None:
    events = event_count(trail)
    done = jobtrail(
        backend_url,
        "retry",
        "--since",
        "2026-03-01T00:00:00Z",
        "--type",
        "render",
        "--code",
        "insufficient_credits",
        "--dry-run",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{mixed['early']} render failed insufficient_credits",
        f"{mixed['late']} render failed insufficient_credits",
        "would retry 2 job(s) (dry run: nothing written)",
    ]
    assert event_count(trail) == events


def test_bulk_retry_takes_the_matching_jobs_once(
    trail: Jobtrail, backend_url: str, mixed: dict[str, str]
) -> None:
    before = {name: stored_events(trail, job_id) for name, job_id in mixed.items()}
    args = ["retry", "--since", "2026-03-02T00:00:00+00:00", "--code", "insufficient_credits"]
    done = jobtrail(backend_url, *args, "--type", "render", "--reason", "credits topped up")

    assert done.returncode == 0, done.stderr
    (new_id,) = retries_of(trail, mixed["late"])
    assert done.stdout.splitlines() == [
        f"{mixed['late']} render failed insufficient_credits -> {new_id}",
        "retried 1 job(s)",
    ]
    assert all(retries_of(trail, job_id) == [] for name, job_id in mixed.items() if name != "late")
    assert {name: stored_events(trail, job_id) for name, job_id in mixed.items()} == before
    queued = trail.history(new_id)[0]
    assert (queued.retry_of, queued.reason, queued.actor) == (  # type: ignore[attr-defined]
        mixed["late"],
        "credits topped up",
        "cli",
    )

    again = jobtrail(backend_url, *args, "--type", "render")  # already retried: left out
    assert again.returncode == 0 and again.stdout == "retried 0 job(s)\n"
    assert retries_of(trail, mixed["late"]) == [new_id]
    assert_replay_clean(backend_url)


def test_bulk_filters_through_the_api(trail: Jobtrail, mixed: dict[str, str]) -> None:
    def chosen(**filters: Any) -> list[str]:
        pairs = trail.retry_where(dry_run=True, **filters)
        assert all(new is None for _, new in pairs)
        return [original for original, _ in pairs]

    since = T1 - timedelta(hours=1)
    assert chosen(since=since) == [
        mixed["early"],
        *sorted([mixed["late"], mixed["other_type"], mixed["other_code"]]),
    ]
    assert chosen(since=since, until=T2) == [mixed["early"]]
    assert chosen(since=T1 + timedelta(seconds=1), job_type="export") == [mixed["other_type"]]
    assert chosen(since=since, error_code="upstream_timeout") == [mixed["other_code"]]
    assert chosen(since=since, status="cancelled") == [mixed["cancelled"]]
    assert chosen(since=since, status="completed") == []
    assert chosen(since=T2 + timedelta(seconds=1)) == []
    assert len(chosen(since=since, limit=2)) == 2

    events = event_count(trail)
    pairs = trail.retry_where(since=since, status="cancelled", meta=Meta(actor="ops"))
    assert event_count(trail) == events + 1
    ((original, new_id),) = pairs
    assert original == mixed["cancelled"] and new_id is not None
    assert trail.get(new_id)["retry_of"] == original


def test_the_limit_takes_the_earliest_and_says_more_may_match(
    trail: Jobtrail, backend_url: str, mixed: dict[str, str]
) -> None:
    done = jobtrail(backend_url, "retry", "--since", "2026-01-01", "--limit", "1")
    assert done.returncode == 0, done.stderr
    (new_id,) = retries_of(trail, mixed["early"])
    assert done.stdout.splitlines()[0].endswith(f"-> {new_id}")
    assert "--limit 1 reached: run again for the next ones" in done.stderr
    with trail.engine.connect() as conn:
        count = conn.execute(select(func.count()).where(job.c.retry_of.is_not(None))).scalar_one()
    assert count == 1


# --------------------------------------------------------------------- the rule


def test_a_new_retry_once_the_previous_one_has_finished(trail: Jobtrail) -> None:
    original = failed(trail)
    first = trail.retry(original)
    assert trail.retry(original) == first  # still queued: the same retry
    trail.cancel(first, "wrong shot")
    second = trail.retry(original)
    assert second != first
    assert sorted(retries_of(trail, original)) == sorted([first, second])
    assert trail.get(second)["idempotency_key"] == f"retry:{original}:1"
