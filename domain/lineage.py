"""Retry with lineage: which key makes two requests for one retry a single new job, and
what a bulk retry selects.

A retry never reopens a finished job: it is a new job (`Job.retry_from`) whose `JobQueued`
names the original (``retry_of``). Standard library only, like the rest of `domain/`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from jobtrail.domain import limits
from jobtrail.domain.errors import InvalidCommand, InvalidField, JobNotFound
from jobtrail.domain.moments import check_time
from jobtrail.domain.status import JobStatus

if TYPE_CHECKING:  # the CLI's parser reads this module: it must not load the Machine
    from jobtrail.domain.events import Event
    from jobtrail.domain.ports import EventStore

RETRYABLE_STATUSES = (JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.COMPLETED)
"""What a bulk retry may select (``failed`` by default): the finished statuses."""
ERROR_CODE_FILTER = limits.Text(100)
"""``job.error_code`` is VARCHAR(100)."""
RETRY_LIMIT = limits.Whole(1, 10_000)
"""Jobs one bulk retry takes: all of them are written in one transaction."""
DEFAULT_RETRY_LIMIT = 1000

RetryCounts = Callable[[Collection[str]], dict[str, int]]
"""How many *finished* retries each of these jobs has (a job with none may be left out)."""


def retry_key(original_id: str, finished_retries: int) -> str:
    """The idempotency key of a retry: ``retry:ORIGINAL_ID:N``, N = the original's retries
    that have finished.

    While the latest retry of a job is queued or running, N stays the same, so every
    request to retry the job again (two operators at once, a script run twice) gets that
    key and that one job. Once the retry has finished, N is one more and a new request
    makes a new job. So a job has at most one unfinished retry at any time.
    """
    return f"retry:{original_id}:{finished_retries}"


def histories(store: EventStore, job_ids: Sequence[str]) -> dict[str, list[Event]]:
    """The histories of the jobs to retry, in one read; `JobNotFound` for the first unknown."""
    found = store.load_many(list(dict.fromkeys(job_ids)))
    for job_id in job_ids:
        if job_id not in found:
            raise JobNotFound(job_id=job_id)
    return found


def retries_holding(
    store: EventStore,
    find_by_idempotency_keys: Callable[[Collection[str]], dict[str, str]],
    keys: Mapping[str, str],
) -> dict[str, str]:
    """The retries that already hold these keys (``keys``: by original id), by key.

    A key held by a job that is not a retry of that original (a job submitted with a key
    of this form) is refused with `InvalidCommand` rather than taken for its retry.
    """
    known = find_by_idempotency_keys(set(keys.values())) if keys else {}
    holders = store.load_many(list(set(known.values()))) if known else {}
    for original_id, key in keys.items():
        if key not in known:
            continue
        history = holders.get(known[key], [])
        queued = history[0] if history else None  # its JobQueued
        if getattr(queued, "retry_of", None) != original_id:
            raise InvalidCommand(
                reason=f"the idempotency key {key} is held by job {known[key]}, "
                f"which is not a retry of {original_id}"
            )
    return known


@dataclass(frozen=True)
class RetryFilter:
    """Which finished jobs a bulk retry takes: ``status`` (failed by default), optionally of
    one job type and error code, finished (``completed_at``) from ``since`` up to but not
    including ``until``; the oldest first, at most ``limit``. Jobs already retried are
    left out: their lineage goes on in their retry, which a later bulk retry may select."""

    since: datetime
    status: str = JobStatus.FAILED
    job_type: str | None = None
    error_code: str | None = None
    until: datetime | None = None
    limit: int = DEFAULT_RETRY_LIMIT

    def check(self) -> None:
        """Every field within its limits, else `InvalidField` naming it."""
        if self.status not in RETRYABLE_STATUSES:
            allowed = ", ".join(RETRYABLE_STATUSES)
            raise InvalidField(
                field="status", reason=f"must be one of {allowed}, not {self.status!r}"
            )
        limits.check_optional(limits.JOB_TYPE_FILTER, self.job_type, "job_type")
        limits.check_optional(ERROR_CODE_FILTER, self.error_code, "error_code")
        check_time(self.since, "since")
        if self.until is not None:
            check_time(self.until, "until")
            if self.until <= self.since:
                raise InvalidField(field="until", reason="must be later than since")
        RETRY_LIMIT.check(self.limit, "limit")
