"""The event store contract, run on every backend: in memory, SQLite and PostgreSQL.

Tests of the `EventStore` port take the `store` fixture (tests/conftest.py), which gives the
in-memory store of the unit tests (tests/memory_store.py) as well as the SQL store on each
database: one contract, every implementation (as eventsourcing runs its persistence test
cases on its in-memory recorder too). What only the SQL store has - the `job` projection
written in the append's transaction, the triggers, the migrations - is tested through the
`trail` fixture, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.sql.errors import translated_errors
from jobtrail.adapters.sql.migrate import head
from jobtrail.domain.errors import (
    AppendOnlyViolation,
    ConcurrencyConflict,
    DuplicateIdempotencyKey,
    InsufficientCredits,
    InvalidCommand,
    UpstreamTimeout,
)
from jobtrail.domain.events import Event
from jobtrail.domain.job import Job
from jobtrail.domain.ports import Append, EventStore
from jobtrail.domain.retry import RetryPolicy
from jobtrail.domain.services import JobSpec
from sqlalchemy import text

from tests.helpers import check_history, check_projection, event_count

NOW = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def queued_job(job_id: str = "00000000-0000-4000-8000-000000000001", **kwargs: object) -> Job:
    return Job.submit(job_id, "shot_video_generation", {"credits": 3}, now=NOW, **kwargs)  # type: ignore[arg-type]


def job_id(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


def everything(store: EventStore) -> list[Event]:
    return list(store.read_all())


def _renumbered(events: list[Event], first_version: int) -> list[Event]:
    return [replace(e, version=first_version + i) for i, e in enumerate(events)]


# ------------------------------------------------------------------- the port


def test_appended_events_load_back_equal_and_positioned(store: EventStore) -> None:
    job = queued_job()
    job.start("w1", 30, now=NOW)
    job.report_progress(1, 40, "half", now=NOW)
    job.complete(1, {"url": "s3://x", "frames": [1, 2.5]}, now=NOW)
    store.append(job.pending, expected_version=0)

    loaded = store.load(job.id)
    positions = [e.position for e in loaded]
    assert None not in positions and positions == sorted(set(positions))  # type: ignore[type-var]
    assert [{**e.envelope(), "position": None} for e in loaded] == [
        e.envelope() for e in job.pending
    ]
    check_history(job.id, loaded)


def test_an_unknown_job_has_no_events(store: EventStore) -> None:
    store.append(queued_job().pending, 0)
    assert store.load(job_id(99)) == []
    assert store.load_many([job_id(1), job_id(99)]) == {job_id(1): store.load(job_id(1))}


def test_stale_expected_version_is_a_conflict_and_writes_nothing(store: EventStore) -> None:
    job = queued_job()
    store.append(job.pending, 0)
    first = Job.from_history(job.id, store.load(job.id))
    second = Job.from_history(job.id, store.load(job.id))
    first.cancel("one", now=NOW)
    second.start("w", 30, now=NOW)
    store.append(first.pending, 1)
    before = everything(store)

    with pytest.raises(ConcurrencyConflict):
        store.append(second.pending, 1)

    assert everything(store) == before
    assert [e.type for e in store.load(job.id)] == ["JobQueued", "JobCancelled"]


def test_an_expected_version_ahead_of_the_job_is_a_conflict(store: EventStore) -> None:
    job = queued_job()
    store.append(job.pending, 0)
    job.pending.clear()
    job.start("w", 30, now=NOW)
    ahead = [e.sealed() for e in _renumbered(job.pending, 3)]
    with pytest.raises(ConcurrencyConflict):
        store.append(ahead, 2)
    assert len(everything(store)) == 1


def test_a_second_new_job_with_the_same_id_is_a_conflict(store: EventStore) -> None:
    store.append(queued_job().pending, 0)
    with pytest.raises(ConcurrencyConflict):
        store.append(queued_job().pending, 0)
    assert len(everything(store)) == 1


def test_an_append_must_continue_the_version_sequence(store: EventStore) -> None:
    job = queued_job()
    with pytest.raises(InvalidCommand):
        store.append(job.pending, expected_version=3)
    assert everything(store) == []


def test_an_append_takes_the_events_of_one_job(store: EventStore) -> None:
    mixed = [*queued_job(job_id(1)).pending, *_renumbered(queued_job(job_id(2)).pending, 2)]
    with pytest.raises(InvalidCommand):
        store.append(mixed, expected_version=0)
    assert everything(store) == []


def test_a_new_job_with_a_taken_idempotency_key_is_refused(store: EventStore) -> None:
    store.append(queued_job(job_id(10), idempotency_key="order-7").pending, 0)
    with pytest.raises(DuplicateIdempotencyKey) as raised:
        store.append(queued_job(job_id(11), idempotency_key="order-7").pending, 0)
    assert raised.value.context["key"] == "order-7"  # the key is named
    assert store.load(job_id(11)) == []
    assert len(everything(store)) == 1


def test_two_new_jobs_of_one_batch_cannot_share_a_key(store: EventStore) -> None:
    batch = [Append(queued_job(job_id(n), idempotency_key="k").pending, 0) for n in (1, 2)]
    with pytest.raises(DuplicateIdempotencyKey) as raised:
        store.append_batch(batch)
    assert raised.value.context["key"] == "k"
    assert everything(store) == []


def test_a_batch_is_all_or_nothing(store: EventStore) -> None:
    taken = queued_job(job_id(10), idempotency_key="k")
    store.append(taken.pending, 0)
    fresh = queued_job(job_id(11))
    clash = queued_job(job_id(12), idempotency_key="k")

    with pytest.raises(DuplicateIdempotencyKey):
        store.append_batch([Append(fresh.pending, 0), Append(clash.pending, 0)])

    assert len(everything(store)) == 1
    assert store.load(fresh.id) == []


def test_a_conflict_anywhere_in_a_batch_writes_nothing(store: EventStore) -> None:
    store.append(queued_job(job_id(1)).pending, 0)
    winner = Job.from_history(job_id(1), store.load(job_id(1)))
    stale = Job.from_history(job_id(1), store.load(job_id(1)))
    winner.cancel("first", now=NOW)
    store.append(winner.pending, 1)
    stale.start("w", 30, now=NOW)
    fresh = queued_job(job_id(2))
    with pytest.raises(ConcurrencyConflict):
        store.append_batch([Append(fresh.pending, 0), Append(stale.pending, 1)])
    assert store.load(fresh.id) == []
    assert len(everything(store)) == 2


def several_jobs_in_one_batch(store: EventStore) -> tuple[list[Job], list[Append]]:
    """Three jobs queued, then a batch that finishes them in the opposite order."""
    jobs = [queued_job(job_id(20 + n)) for n in (3, 1, 2)]
    store.append_batch([Append(job.pending, 0) for job in jobs])
    for job in jobs:
        job.pending.clear()
        job.start("w1", 30, now=NOW)
    jobs[2].report_progress(1, 50, None, now=NOW)
    jobs[0].complete(1, {"frames": [1, 2.5], "none": None}, now=NOW)
    jobs[1].fail(InsufficientCredits(), 1, now=NOW, policy=RetryPolicy())
    batch = [Append(list(job.pending), 1) for job in reversed(jobs)]
    store.append_batch(batch)
    return jobs, batch


def test_a_batch_over_several_jobs_keeps_the_callers_order(store: EventStore) -> None:
    """Rows are updated in id order, but positions follow the order the caller gave."""
    jobs, batch = several_jobs_in_one_batch(store)
    written = store.read_after(0)[len(jobs) :]
    assert [e.event_id for e in written] == [e.event_id for a in batch for e in a.events]
    for job in jobs:
        check_history(job.id, store.load(job.id))


def test_read_after_returns_everything_after_a_position_in_order(store: EventStore) -> None:
    jobs = [Job.submit(job_id(n), "t", {"n": n}, now=NOW) for n in range(25)]
    store.append_batch([Append(job.pending, 0) for job in jobs])
    all_events = store.read_after(0, limit=1000)
    assert [e.job_id for e in all_events] == [job.id for job in jobs]
    positions = [e.position or 0 for e in all_events]
    assert positions == sorted(set(positions))
    assert store.read_after(positions[9], limit=5) == all_events[10:15]
    assert store.read_after(positions[-1]) == []
    assert list(store.read_all(batch=7)) == all_events


# ------------------------------------------------ the SQL store: projection, log, schema


def test_a_conflict_leaves_the_projection_row_as_it_was(trail: Jobtrail) -> None:
    job = queued_job()
    trail.store.append(job.pending, 0)
    first = Job.from_history(job.id, trail.store.load(job.id))
    second = Job.from_history(job.id, trail.store.load(job.id))
    first.cancel("one", now=NOW)
    second.start("w", 30, now=NOW)
    trail.store.append(first.pending, 1)
    with pytest.raises(ConcurrencyConflict):
        trail.store.append(second.pending, 1)
    assert trail.queries.get(job.id)["status"] == "cancelled"  # type: ignore[index]
    check_projection(trail, job.id)


def test_a_refused_batch_leaves_no_row(trail: Jobtrail) -> None:
    trail.store.append(queued_job(job_id(10), idempotency_key="k").pending, 0)
    fresh = queued_job(job_id(11))
    clash = queued_job(job_id(12), idempotency_key="k")
    with pytest.raises(DuplicateIdempotencyKey):
        trail.store.append_batch([Append(fresh.pending, 0), Append(clash.pending, 0)])
    assert trail.queries.get(fresh.id) is None
    assert event_count(trail) == 1


def test_a_batch_over_several_jobs_projects_every_row(trail: Jobtrail) -> None:
    jobs, _ = several_jobs_in_one_batch(trail.store)
    for job in jobs:
        check_projection(trail, job.id)
    assert trail.get(jobs[0].id)["result"] == {"frames": [1, 2.5], "none": None}


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
