"""Builders of jobs in every state, with explicit UTC times, shared by the unit tests."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Protocol

from jobtrail.domain.errors import InsufficientCredits, UpstreamTimeout
from jobtrail.domain.job import Job, Meta
from jobtrail.domain.retry import RetryPolicy
from jobtrail.domain.status import JobStatus

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
WORKER = Meta(actor="worker:w1", correlation_id="corr-1")


class Builder(Protocol):
    """Builds a job (with the given id) through its commands."""

    def __call__(self, job_id: str = ...) -> Job: ...


def at(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)


def policy(seed: int = 0) -> RetryPolicy:
    """A retry policy whose jitter is reproducible."""
    return RetryPolicy(rng=random.Random(seed))


def queued(job_id: str = "job-queued", *, max_attempts: int = 3) -> Job:
    return Job.submit(
        job_id,
        "video",
        {"shot": 7, "prompt": "a cat"},
        now=T0,
        max_attempts=max_attempts,
        priority=5,
        idempotency_key=f"key-{job_id}",
    )


def processing(job_id: str = "job-processing", *, max_attempts: int = 3) -> Job:
    job = queued(job_id, max_attempts=max_attempts)
    job.start("w1", 30, now=at(1), meta=WORKER)
    return job


def completed(job_id: str = "job-completed") -> Job:
    job = processing(job_id)
    job.report_progress(1, 40, "rendering", now=at(2), meta=WORKER)
    job.complete(1, {"url": "s3://bucket/out.mp4"}, now=at(3.5), meta=WORKER)
    return job


def failed(job_id: str = "job-failed") -> Job:
    job = processing(job_id)
    job.fail(InsufficientCredits(), 1, now=at(2), policy=policy(), meta=WORKER)
    return job


def cancelled(job_id: str = "job-cancelled") -> Job:
    job = processing(job_id)
    job.cancel("user asked", now=at(2), meta=Meta(actor="user:42"))
    return job


def retried_then_completed(job_id: str = "job-retried") -> Job:
    """Every event type but JobFailed and JobCancelled: a retry, then success."""
    job = processing(job_id)
    job.report_progress(1, 10, None, now=at(2), meta=WORKER)
    job.fail(UpstreamTimeout(), 1, now=at(3), policy=policy(), meta=WORKER)
    assert job.available_at is not None
    job.start("w2", 30, now=job.available_at + timedelta(seconds=1), meta=WORKER)
    job.complete(2, [1, 2, 3], now=job.available_at + timedelta(seconds=5), meta=WORKER)
    return job


def retries_exhausted(job_id: str = "job-exhausted") -> Job:
    """Two retryable failures on a job allowed two attempts: a retry, then JobFailed."""
    job = processing(job_id, max_attempts=2)
    job.fail(UpstreamTimeout(), 1, now=at(2), policy=policy(), meta=WORKER)
    assert job.available_at is not None
    job.start("w2", 30, now=job.available_at, meta=WORKER)
    job.fail(UpstreamTimeout(), 2, now=job.available_at + timedelta(seconds=1), policy=policy())
    return job


TERMINAL_BUILDERS: dict[JobStatus, Builder] = {
    JobStatus.COMPLETED: completed,
    JobStatus.FAILED: failed,
    JobStatus.CANCELLED: cancelled,
}

ALL_HISTORIES: dict[str, Builder] = {
    "queued": queued,
    "processing": processing,
    "completed": completed,
    "failed": failed,
    "cancelled": cancelled,
    "retried_then_completed": retried_then_completed,
    "retries_exhausted": retries_exhausted,
}
