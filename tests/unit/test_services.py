"""JobService against the in-memory EventStore (tests/memory_store.py, held to the same
contract as the SQL stores): idempotent submit, conflict retries, lookups."""

from __future__ import annotations

import random
from collections.abc import Collection
from datetime import datetime

import pytest
from jobtrail.domain.errors import (
    ConcurrencyConflict,
    InsufficientCredits,
    JobNotFound,
    LeaseExpired,
    StaleAttempt,
    UpstreamTimeout,
)
from jobtrail.domain.events import JobQueued
from jobtrail.domain.job import Job, Meta, Outcome
from jobtrail.domain.ports import Append, Clock
from jobtrail.domain.retry import RetryPolicy
from jobtrail.domain.services import JobService, JobSpec

from tests.memory_store import InMemoryEventStore
from tests.unit.histories import T0


class FixedClock(Clock):
    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


@pytest.fixture
def store() -> InMemoryEventStore:
    return InMemoryEventStore()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def service(store: InMemoryEventStore, clock: FixedClock) -> JobService:
    return JobService(
        store=store,
        find_by_idempotency_keys=store.find_keys,
        clock=clock,
        policy=RetryPolicy(rng=random.Random(0)),
    )


def _types(store: InMemoryEventStore, job_id: str) -> list[str]:
    return [event.type for event in store.load(job_id)]


def _started(service: JobService) -> str:
    job_id = service.submit(JobSpec("video", {"shot": 1}, max_attempts=3))
    assert service.start(job_id, "w1", 30) is Outcome.RECORDED
    return job_id


# ------------------------------------------------------------------------- submit


def test_submit_appends_job_queued(service: JobService, store: InMemoryEventStore) -> None:
    meta = Meta(actor="api", correlation_id="r-1")
    job_id = service.submit(JobSpec("video", {"shot": 1}, priority=3), meta)
    (event,) = store.load(job_id)
    assert isinstance(event, JobQueued)
    assert (event.job_type, event.payload, event.priority) == ("video", {"shot": 1}, 3)
    assert (event.actor, event.correlation_id, event.occurred_at) == ("api", "r-1", T0)
    assert event.position == 1


def test_submit_without_payload_uses_an_empty_object(service: JobService) -> None:
    job_id = service.submit(JobSpec("video"))
    assert service.get(job_id).payload == {}


def test_submit_returns_distinct_ids(service: JobService) -> None:
    assert service.submit(JobSpec("video")) != service.submit(JobSpec("video"))


def test_repeated_idempotency_key_returns_the_same_id(
    service: JobService, store: InMemoryEventStore
) -> None:
    first = service.submit(JobSpec("video", {"shot": 1}, idempotency_key="order-1"))
    second = service.submit(JobSpec("video", {"shot": 1}, idempotency_key="order-1"))
    assert second == first
    assert len(store.log) == 1
    assert service.submit(JobSpec("video", idempotency_key="order-2")) != first
    assert len(store.log) == 2


def test_submit_many_keeps_order_and_dedupes_keys(
    service: JobService, store: InMemoryEventStore
) -> None:
    known = service.submit(JobSpec("video", idempotency_key="k-old"))
    batches = store.batches
    ids = service.submit_many(
        [
            JobSpec("image", idempotency_key="k-new"),
            JobSpec("video", idempotency_key="k-old"),
            JobSpec("image"),
            JobSpec("image", idempotency_key="k-new"),
        ]
    )
    assert store.batches == batches + 1  # one transaction
    assert ids[1] == known
    assert ids[3] == ids[0]
    assert len(set(ids)) == 3
    assert [_types(store, job_id) for job_id in ids] == [["JobQueued"]] * 4
    assert len(store.log) == 3


def test_idempotency_race_returns_the_winner(store: InMemoryEventStore, clock: FixedClock) -> None:
    """The lookup missed, but another submit with the key committed before our append."""
    winner = Job.submit("winner", "video", {}, now=T0, idempotency_key="order-1")
    store.commit([Append(winner.pending, 0)])
    lookups: list[set[str]] = []

    def racy_lookup(keys: Collection[str]) -> dict[str, str]:
        lookups.append(set(keys))
        return {} if len(lookups) == 1 else store.find_keys(keys)

    service = JobService(store=store, find_by_idempotency_keys=racy_lookup, clock=clock)
    assert service.submit(JobSpec("video", idempotency_key="order-1")) == "winner"
    assert lookups == [{"order-1"}, {"order-1"}]
    assert len(store.log) == 1


# ------------------------------------------------------------------------ execute


def test_execute_retries_after_an_injected_conflict(
    service: JobService, store: InMemoryEventStore
) -> None:
    job_id = _started(service)
    store.conflicts_to_inject = 1
    batches = store.batches
    assert service.complete(job_id, 1, {"url": "x"}) is Outcome.RECORDED
    assert store.batches == batches + 2
    assert _types(store, job_id) == ["JobQueued", "JobStarted", "JobCompleted"]
    assert service.get(job_id).status == "completed"


def test_execute_reruns_the_command_on_fresh_state(
    service: JobService, store: InMemoryEventStore
) -> None:
    job_id = _started(service)
    calls: list[int] = []

    def progress(job: Job) -> Outcome:
        calls.append(job.version)
        return job.report_progress(1, 50, now=T0)

    store.before_next_append = lambda: store.append_as_someone_else(
        job_id, lambda job: job.report_progress(1, 20, now=T0)
    )
    assert service.execute(job_id, progress) is Outcome.RECORDED
    assert calls == [2, 3]  # the second run saw the concurrent event
    events = store.load(job_id)
    assert [e.version for e in events] == [1, 2, 3, 4]
    assert service.get(job_id).progress == 50


def test_a_second_fail_after_a_terminal_fail_records_nothing(
    service: JobService, store: InMemoryEventStore
) -> None:
    job_id = _started(service)
    # While our fail is in flight, another process records the job's terminal failure.
    store.before_next_append = lambda: store.append_as_someone_else(
        job_id,
        lambda job: job.fail(InsufficientCredits(), 1, now=T0, policy=RetryPolicy()),
    )
    outcome = service.fail(job_id, UpstreamTimeout(), 1)
    assert outcome is Outcome.ALREADY_FINISHED
    assert _types(store, job_id) == ["JobQueued", "JobStarted", "JobFailed"]
    assert service.get(job_id).error_code == "insufficient_credits"


def test_reaper_racing_the_workers_retry_cannot_fail_the_job(
    service: JobService, store: InMemoryEventStore
) -> None:
    job_id = _started(service)
    # The worker's own retryable failure lands while the reaper's LeaseExpired is in flight.
    store.before_next_append = lambda: store.append_as_someone_else(
        job_id,
        lambda job: job.fail(UpstreamTimeout(), 1, now=T0, policy=RetryPolicy()),
    )
    with pytest.raises(StaleAttempt):
        service.fail(job_id, LeaseExpired(), 1)
    assert _types(store, job_id) == ["JobQueued", "JobStarted", "JobRetryScheduled"]
    assert service.get(job_id).status == "queued"


def test_fail_twice_in_a_row(service: JobService, store: InMemoryEventStore) -> None:
    job_id = _started(service)
    assert service.fail(job_id, InsufficientCredits(), 1) is Outcome.RECORDED
    assert service.fail(job_id, InsufficientCredits(), 1) is Outcome.ALREADY_FINISHED
    assert service.fail(job_id, UpstreamTimeout(), None) is Outcome.ALREADY_FINISHED
    assert _types(store, job_id).count("JobFailed") == 1


def test_execute_gives_up_after_max_conflict_retries(
    store: InMemoryEventStore, clock: FixedClock
) -> None:
    service = JobService(
        store=store, find_by_idempotency_keys=store.find_keys, clock=clock, max_conflict_retries=3
    )
    job_id = service.submit(JobSpec("video"))
    store.conflicts_to_inject = 3
    with pytest.raises(ConcurrencyConflict):
        service.cancel(job_id, "stop")
    assert _types(store, job_id) == ["JobQueued"]
    assert store.conflicts_to_inject == 0


def test_retry_then_success_through_the_service(
    service: JobService, store: InMemoryEventStore, clock: FixedClock
) -> None:
    job_id = _started(service)
    assert service.fail(job_id, UpstreamTimeout(), 1) is Outcome.RECORDED
    job = service.get(job_id)
    assert job.status == "queued"
    assert job.available_at is not None
    clock.moment = job.available_at
    assert service.start(job_id, "w2", 30) is Outcome.RECORDED
    assert service.report_progress(job_id, 2, 60, "rendering") is Outcome.RECORDED
    assert service.complete(job_id, 2, "done") is Outcome.RECORDED
    assert _types(store, job_id) == [
        "JobQueued",
        "JobStarted",
        "JobRetryScheduled",
        "JobStarted",
        "JobProgressed",
        "JobCompleted",
    ]
    assert [e.position for e in store.load(job_id)] == [1, 2, 3, 4, 5, 6]


def test_read_all_walks_the_log(service: JobService, store: InMemoryEventStore) -> None:
    ids = [service.submit(JobSpec("video")) for _ in range(5)]
    assert [e.job_id for e in store.read_all(batch=2)] == ids


# ---------------------------------------------------------------------------- get


def test_get_unknown_job(service: JobService) -> None:
    with pytest.raises(JobNotFound) as raised:
        service.get("00000000-0000-0000-0000-000000000000")
    assert "00000000-0000-0000-0000-000000000000" in str(raised.value)


def test_commands_on_an_unknown_job_raise_job_not_found(service: JobService) -> None:
    with pytest.raises(JobNotFound):
        service.cancel("missing")
    with pytest.raises(JobNotFound):
        service.fail("missing", UpstreamTimeout(), None)


def test_get_rebuilds_the_job(service: JobService) -> None:
    job_id = _started(service)
    job = service.get(job_id)
    assert (job.id, job.status, job.version, job.attempt, job.worker_id) == (
        job_id,
        "processing",
        2,
        1,
        "w1",
    )
    assert job.pending == []
