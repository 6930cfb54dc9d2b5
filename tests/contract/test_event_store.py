"""The event store contract, run against every backend (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.sql.engine import translated_errors
from jobtrail.adapters.sql.migrate import head
from jobtrail.domain.errors import (
    AppendOnlyViolation,
    ConcurrencyConflict,
    DuplicateIdempotencyKey,
    InsufficientCredits,
    InvalidCommand,
    UpstreamTimeout,
)
from jobtrail.domain.job import Job
from jobtrail.domain.ports import Append
from jobtrail.domain.retry import RetryPolicy
from jobtrail.domain.services import JobSpec
from sqlalchemy import text

from tests.helpers import check_history, check_projection, event_count

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def queued_job(job_id: str = "00000000-0000-4000-8000-000000000001", **kwargs: object) -> Job:
    return Job.submit(job_id, "shot_video_generation", {"credits": 3}, now=NOW, **kwargs)  # type: ignore[arg-type]


def test_appended_events_load_back_equal_and_positioned(trail: Jobtrail) -> None:
    job = queued_job()
    job.start("w1", 30, now=NOW)
    job.report_progress(1, 40, "half", now=NOW)
    job.complete(1, {"url": "s3://x", "frames": [1, 2.5]}, now=NOW)
    trail.store.append(job.pending, expected_version=0)

    loaded = trail.store.load(job.id)
    positions = [e.position for e in loaded]
    assert None not in positions and positions == sorted(set(positions))  # type: ignore[type-var]
    assert [{**e.envelope(), "position": None} for e in loaded] == [
        e.envelope() for e in job.pending
    ]
    check_history(job.id, loaded)


def test_stale_expected_version_is_a_conflict_and_writes_nothing(trail: Jobtrail) -> None:
    job = queued_job()
    trail.store.append(job.pending, 0)
    first = Job.from_history(job.id, trail.store.load(job.id))
    second = Job.from_history(job.id, trail.store.load(job.id))
    first.cancel("one", now=NOW)
    second.start("w", 30, now=NOW)
    trail.store.append(first.pending, 1)
    before = event_count(trail)

    with pytest.raises(ConcurrencyConflict):
        trail.store.append(second.pending, 1)

    assert event_count(trail) == before
    assert trail.queries.get(job.id)["status"] == "cancelled"  # type: ignore[index]


def test_a_second_new_job_with_the_same_id_is_a_conflict(trail: Jobtrail) -> None:
    trail.store.append(queued_job().pending, 0)
    with pytest.raises(ConcurrencyConflict):
        trail.store.append(queued_job().pending, 0)
    assert event_count(trail) == 1


def test_an_append_must_continue_the_version_sequence(trail: Jobtrail) -> None:
    job = queued_job()
    with pytest.raises(InvalidCommand):
        trail.store.append(job.pending, expected_version=3)
    assert event_count(trail) == 0


def test_a_batch_is_all_or_nothing(trail: Jobtrail) -> None:
    taken = queued_job("00000000-0000-4000-8000-00000000000a", idempotency_key="k")
    trail.store.append(taken.pending, 0)
    fresh = queued_job("00000000-0000-4000-8000-00000000000b")
    clash = queued_job("00000000-0000-4000-8000-00000000000c", idempotency_key="k")

    with pytest.raises(DuplicateIdempotencyKey):
        trail.store.append_batch([Append(fresh.pending, 0), Append(clash.pending, 0)])

    assert event_count(trail) == 1
    assert trail.queries.get(fresh.id) is None


def test_a_batch_over_several_jobs_keeps_the_callers_order(trail: Jobtrail) -> None:
    """Rows are updated in id order, but positions follow the order the caller gave."""
    jobs = [queued_job(f"00000000-0000-4000-8000-00000000002{n}") for n in (3, 1, 2)]
    trail.store.append_batch([Append(job.pending, 0) for job in jobs])
    for job in jobs:
        job.pending.clear()
        job.start("w1", 30, now=NOW)
    jobs[2].report_progress(1, 50, None, now=NOW)
    jobs[0].complete(1, {"frames": [1, 2.5], "none": None}, now=NOW)
    jobs[1].fail(InsufficientCredits(), 1, now=NOW, policy=RetryPolicy())
    batch = [Append(list(job.pending), 1) for job in reversed(jobs)]
    trail.store.append_batch(batch)

    written = trail.store.read_after(0)[len(jobs) :]
    assert [e.event_id for e in written] == [e.event_id for a in batch for e in a.events]
    for job in jobs:
        check_projection(trail, job.id)
        check_history(job.id, trail.store.load(job.id))
    assert trail.get(jobs[0].id)["result"] == {"frames": [1, 2.5], "none": None}


def test_read_after_returns_everything_after_a_position_in_order(trail: Jobtrail) -> None:
    ids = trail.submit_many([JobSpec("t", {"n": n}) for n in range(25)])
    all_events = trail.store.read_after(0, limit=1000)
    assert [e.job_id for e in all_events] == ids
    positions = [e.position or 0 for e in all_events]
    assert positions == sorted(positions)
    assert trail.store.read_after(positions[9], limit=5) == all_events[10:15]
    assert trail.store.read_after(positions[-1]) == []
    assert list(trail.store.read_all(batch=7)) == all_events


def test_the_projection_row_matches_the_log_after_each_command(trail: Jobtrail) -> None:
    job_id = trail.submit("asset_image_generation", {"credits": 0}, max_attempts=2)
    check_projection(trail, job_id)
    trail.service.start(job_id, "w1", 30)
    check_projection(trail, job_id)
    trail.service.fail(job_id, InsufficientCredits(), 1)
    check_projection(trail, job_id)
    row = trail.get(job_id)
    assert (row["status"], row["error_code"], row["error_category"]) == (
        "failed",
        "insufficient_credits",
        "user",
    )
    assert row["completed_at"] is not None


def test_idempotent_submit_returns_the_same_job_and_records_nothing(trail: Jobtrail) -> None:
    first = trail.submit("t", {"a": 1}, idempotency_key="order-7")
    count = event_count(trail)
    assert trail.submit("t", {"a": 2}, idempotency_key="order-7") == first
    assert trail.submit_many([JobSpec("t", idempotency_key="order-7")]) == [first]
    assert event_count(trail) == count


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE job_events SET type = 'JobCompleted'",
        "DELETE FROM job_events",
    ],
)
def test_the_log_refuses_updates_and_deletes(trail: Jobtrail, statement: str) -> None:
    trail.submit("t")
    with (
        pytest.raises(AppendOnlyViolation, match="append-only"),
        translated_errors(),
        trail.engine.begin() as conn,
    ):
        conn.execute(text(statement))
    assert event_count(trail) == 1


def test_retries_are_projected_and_the_job_completes(trail: Jobtrail) -> None:
    trail.service.policy = RetryPolicy(base_delay=0)
    job_id = trail.submit("t", max_attempts=3)
    trail.service.start(job_id, "w1", 30)
    trail.service.fail(job_id, UpstreamTimeout(), 1)
    assert trail.get(job_id)["status"] == "queued"
    trail.service.start(job_id, "w2", 30)
    trail.service.complete(job_id, 2, "done")
    row = trail.get(job_id)
    assert (row["status"], row["attempt"], row["result"], row["error_code"]) == (
        "completed",
        2,
        "done",
        None,
    )
    check_history(job_id, trail.store.load(job_id))
    check_projection(trail, job_id)


def test_db_init_is_idempotent(trail: Jobtrail) -> None:
    trail.submit("t")
    trail.init_db()
    trail.init_db()
    assert event_count(trail) == 1
    with trail.engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head()
