"""Retry with lineage, at the service level, against the in-memory EventStore: a retry is a
new job naming the original; the original records nothing; one key per unfinished retry.

(tests/unit/test_retry.py is RetryPolicy's; these are `JobService.retry` and
`jobtrail.domain.lineage`.)
"""

from __future__ import annotations

import random
from collections.abc import Collection
from datetime import UTC, datetime, timedelta

import pytest
from jobtrail.domain.errors import (
    InsufficientCredits,
    InvalidCommand,
    InvalidField,
    JobNotFound,
)
from jobtrail.domain.events import JobQueued
from jobtrail.domain.job import Job, Meta
from jobtrail.domain.lineage import RetryCounts, RetryFilter, retry_key
from jobtrail.domain.ports import Append, Clock
from jobtrail.domain.retry import RetryPolicy
from jobtrail.domain.services import JobService, JobSpec

from tests.memory_store import InMemoryEventStore
from tests.unit.histories import T0


class FixedClock(Clock):
    def now(self) -> datetime:
        return T0


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


@pytest.fixture
def service(store: InMemoryEventStore) -> JobService:
    return JobService(
        store=store,
        find_by_idempotency_keys=store.find_keys,
        clock=FixedClock(),
        policy=RetryPolicy(rng=random.Random(0)),
    )


def finished_retries(store: InMemoryEventStore) -> RetryCounts:
    """What the `job` table answers (`JobQueries.finished_retries`), read off the log."""

    def count(job_ids: Collection[str]) -> dict[str, int]:
        counts: dict[str, int] = {}
        for event in store.log:
            if not isinstance(event, JobQueued) or event.retry_of not in job_ids:
                continue
            if Job.from_history(event.job_id, store.load(event.job_id)).is_finished:
                counts[event.retry_of] = counts.get(event.retry_of, 0) + 1
        return counts

    return count


def failed_job(service: JobService) -> str:
    spec = JobSpec(
        "video", {"shot": 7}, max_attempts=5, priority=3, queue="gpu", concurrency_key="c-9"
    )
    job_id = service.submit(spec)
    service.start(job_id, "w1", 30)
    service.fail(job_id, InsufficientCredits(), attempt=1)
    return job_id


def first_event(store: InMemoryEventStore, job_id: str) -> JobQueued:
    event = store.load(job_id)[0]
    assert isinstance(event, JobQueued)
    return event


# --------------------------------------------------------------------- one retry


def test_a_retry_is_a_new_job_copying_the_original_and_naming_it(
    service: JobService, store: InMemoryEventStore
) -> None:
    original = failed_job(service)
    before = list(store.load(original))

    new_id = service.retry(
        original, finished_retries(store), reason="credits topped up", meta=Meta(actor="ops")
    )

    assert new_id != original
    assert store.load(original) == before  # nothing recorded on the finished job
    queued = first_event(store, new_id)
    assert [e.type for e in store.load(new_id)] == ["JobQueued"]
    source = first_event(store, original)
    copied = ("job_type", "payload", "max_attempts", "priority", "queue", "concurrency_key")
    assert {f: getattr(queued, f) for f in copied} == {f: getattr(source, f) for f in copied}
    assert (queued.retry_of, queued.reason, queued.actor) == (original, "credits topped up", "ops")
    assert queued.idempotency_key == retry_key(original, 0) == f"retry:{original}:0"
    assert queued.available_at == T0  # due at once, whatever delay the original had


@pytest.mark.parametrize("started", [False, True], ids=["queued", "processing"])
def test_a_job_that_has_not_finished_is_refused_and_nothing_is_written(
    service: JobService, store: InMemoryEventStore, started: bool
) -> None:
    job_id = service.submit(JobSpec("video"))
    if started:
        service.start(job_id, "w1", 30)
    events = len(store.log)
    with pytest.raises(InvalidCommand, match="only a finished job"):
        service.retry(job_id, finished_retries(store))
    assert len(store.log) == events


def test_an_unknown_job_is_not_found(service: JobService, store: InMemoryEventStore) -> None:
    with pytest.raises(JobNotFound):
        service.retry("00000000-0000-4000-8000-000000000000", finished_retries(store))
    assert store.log == []


def test_completed_and_cancelled_jobs_can_be_retried_too(
    service: JobService, store: InMemoryEventStore
) -> None:
    completed = service.submit(JobSpec("video"))
    service.start(completed, "w1", 30)
    service.complete(completed, 1, {"ok": True})
    cancelled = service.submit(JobSpec("video"))
    service.cancel(cancelled, "by mistake")
    for original in (completed, cancelled):
        new_id = service.retry(original, finished_retries(store))
        assert first_event(store, new_id).retry_of == original


# ------------------------------------------------------------- the idempotency rule


def test_retrying_again_while_the_retry_is_unfinished_returns_it(
    service: JobService, store: InMemoryEventStore
) -> None:
    original = failed_job(service)
    counts = finished_retries(store)
    first = service.retry(original, counts)
    events = len(store.log)
    assert service.retry(original, counts, reason="again") == first
    assert len(store.log) == events


def test_once_the_retry_has_finished_a_new_retry_is_a_new_job(
    service: JobService, store: InMemoryEventStore
) -> None:
    original = failed_job(service)
    counts = finished_retries(store)
    first = service.retry(original, counts)
    service.cancel(first, "wrong payload")
    second = service.retry(original, counts)
    assert second != first
    assert first_event(store, second).idempotency_key == f"retry:{original}:1"
    assert first_event(store, second).retry_of == original


def test_a_request_that_loses_the_race_returns_the_winners_job(
    service: JobService, store: InMemoryEventStore
) -> None:
    """The other request appends between our read of the keys and our append: our append
    hits the taken key and we return its job instead of failing or making a second one."""
    original = failed_job(service)
    winner: list[str] = []

    def concurrent_retry() -> None:
        job = Job.from_history(original, store.load(original))
        new = job.retry_from(
            "11111111-1111-4111-8111-111111111111",
            now=T0,
            reason="the other",
            key=f"retry:{original}:0",
        )
        store.commit([Append(new.pending, 0)])
        winner.append(new.id)

    store.before_next_append = concurrent_retry
    assert service.retry(original, finished_retries(store)) == winner[0]
    retries = [e for e in store.log if isinstance(e, JobQueued) and e.retry_of == original]
    assert len(retries) == 1


def test_a_key_held_by_a_job_that_is_not_a_retry_is_refused(
    service: JobService, store: InMemoryEventStore
) -> None:
    original = failed_job(service)
    service.submit(JobSpec("video", idempotency_key=f"retry:{original}:0"))
    events = len(store.log)
    with pytest.raises(InvalidCommand, match="is not a retry of"):
        service.retry(original, finished_retries(store))
    assert len(store.log) == events


# -------------------------------------------------------------------- many at once


def test_retry_many_is_all_or_none(service: JobService, store: InMemoryEventStore) -> None:
    failed = failed_job(service)
    queued = service.submit(JobSpec("video"))
    events, batches = len(store.log), store.batches
    with pytest.raises(InvalidCommand, match=f"job {queued} is queued"):
        service.retry_many([failed, queued], finished_retries(store))
    assert (len(store.log), store.batches) == (events, batches)  # not even tried


def test_retry_many_in_one_batch_and_a_repeated_id_is_one_job(
    service: JobService, store: InMemoryEventStore
) -> None:
    a, b = failed_job(service), failed_job(service)
    batches = store.batches
    ids = service.retry_many([a, b, a], finished_retries(store))
    assert store.batches == batches + 1
    assert ids[0] == ids[2] != ids[1]
    assert [first_event(store, i).retry_of for i in ids] == [a, b, a]


def test_the_reason_and_the_actor_are_checked_before_anything_is_read(
    service: JobService, store: InMemoryEventStore
) -> None:
    original = failed_job(service)
    events = len(store.log)
    with pytest.raises(InvalidField, match="reason"):
        service.retry(original, finished_retries(store), reason="x" * 1001)
    with pytest.raises(InvalidField, match="meta.actor"):
        service.retry(original, finished_retries(store), meta=Meta(actor=""))
    assert len(store.log) == events


# ------------------------------------------------------------------- bulk filters

SINCE = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("where", "field"),
    [
        (RetryFilter(SINCE, status="queued"), "status"),
        (RetryFilter(SINCE, status="processing"), "status"),
        (RetryFilter(datetime(2026, 1, 1)), "since"),  # naive: which zone?
        (RetryFilter(SINCE, until=SINCE), "until"),
        (RetryFilter(SINCE, until=SINCE - timedelta(days=1)), "until"),
        (RetryFilter(SINCE, until=datetime(2026, 2, 1)), "until"),
        (RetryFilter(SINCE, limit=0), "limit"),
        (RetryFilter(SINCE, limit=10_001), "limit"),
        (RetryFilter(SINCE, job_type=""), "job_type"),
        (RetryFilter(SINCE, error_code="c" * 101), "error_code"),
    ],
)
def test_a_bulk_filter_out_of_bounds_names_its_field(where: RetryFilter, field: str) -> None:
    with pytest.raises(InvalidField, match=f"^{field}: "):
        where.check()


@pytest.mark.parametrize("status", ["failed", "cancelled", "completed"])
def test_a_bulk_filter_within_bounds_passes(status: str) -> None:
    RetryFilter(
        SINCE,
        status=status,
        job_type="video",
        error_code="insufficient_credits",
        until=SINCE + timedelta(seconds=1),
        limit=10_000,
    ).check()
