"""The Job aggregate: commands check, events apply.

A command looks at the job, decides, and records an event through `_record`, which fires
the event's trigger on the one Machine and assigns the event's fields. Rebuilding a job
from its history (`Job.from_history`) only assigns: `apply` reads the destination off the
same Machine's transitions and never re-runs a command's checks.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from jobtrail.domain import lifecycle
from jobtrail.domain.canonical import GENESIS_HASH
from jobtrail.domain.errors import (
    CorruptHistory,
    IllegalTransition,
    InvalidCommand,
    JobError,
    StaleAttempt,
)
from jobtrail.domain.events import (
    DEFAULT_QUEUE,
    Event,
    JobCancelled,
    JobCompleted,
    JobFailed,
    JobProgressed,
    JobQueued,
    JobRetryScheduled,
    JobStarted,
)
from jobtrail.domain.retry import RetryPolicy
from jobtrail.domain.status import JobStatus


class Outcome(StrEnum):
    """What a command did: recorded its events, or nothing because the job had finished."""

    RECORDED = "recorded"
    ALREADY_FINISHED = "already_finished"


@dataclass(frozen=True)
class Meta:
    """Who issues a command, the correlation id that ties it to a request, and the W3C
    ``traceparent`` of the request's trace (kept in the events' metadata; see `_record`)."""

    actor: str = "system"
    correlation_id: str | None = None
    traceparent: str | None = None


SYSTEM = Meta()


@dataclass
class Job:
    """One job's state, as its events left it."""

    id: str
    status: str = lifecycle.NEW
    version: int = 0
    last_hash: str = GENESIS_HASH
    job_type: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    max_attempts: int = 1
    priority: int = 0
    idempotency_key: str | None = None
    queue: str = DEFAULT_QUEUE
    concurrency_key: str | None = None
    retry_of: str | None = None
    traceparent: str | None = None
    """The trace context the job was submitted in (its `JobQueued`'s), if any."""
    attempt: int = 0
    progress: int = 0
    worker_id: str | None = None
    result: Any = None
    error_type: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_category: str | None = None
    created_at: datetime | None = None
    available_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    updated_at: datetime | None = None
    lease_expires_at: datetime | None = None
    pending: list[Event] = field(default_factory=list, repr=False)

    # ------------------------------------------------------------------ replay

    @classmethod
    def from_history(cls, job_id: str, events: Sequence[Event]) -> Job:
        """The job its stored events describe; `CorruptHistory` if they cannot be."""
        job = cls(id=job_id)
        for event in events:
            if event.version != job.version + 1:
                raise CorruptHistory(
                    job_id=job_id, reason=f"version {event.version} follows {job.version}"
                )
            try:
                job.apply(event)
            except IllegalTransition as error:
                raise CorruptHistory(
                    job_id=job_id, reason=f"version {event.version}: {error}"
                ) from error
        return job

    def apply(self, event: Event) -> None:
        """Replay: move along the event's transition and assign its fields; no checks."""
        self.status = lifecycle.next_status(self.status, event.trigger)
        self._assign(event)

    def _assign(self, event: Event) -> None:
        for name, value in event.changes().items():
            setattr(self, name, value)
        self.version = event.version
        self.last_hash = event.hash
        self.updated_at = event.occurred_at

    @property
    def job_status(self) -> JobStatus:
        return JobStatus(self.status)

    @property
    def is_finished(self) -> bool:
        return self.status != lifecycle.NEW and self.job_status.is_terminal

    # ---------------------------------------------------------------- commands

    @classmethod
    def submit(
        cls,
        job_id: str,
        job_type: str,
        payload: dict[str, Any],
        *,
        now: datetime,
        max_attempts: int = 3,
        priority: int = 0,
        delay: float = 0.0,
        idempotency_key: str | None = None,
        queue: str = DEFAULT_QUEUE,
        concurrency_key: str | None = None,
        retry_of: str | None = None,
        reason: str | None = None,
        meta: Meta = SYSTEM,
    ) -> Job:
        if not job_type.strip():
            raise InvalidCommand(reason="the job type is empty")
        if max_attempts < 1:
            raise InvalidCommand(reason="max attempts must be at least 1")
        if delay < 0:
            raise InvalidCommand(reason="the delay cannot be negative")
        if not isinstance(payload, dict):
            raise InvalidCommand(reason="the payload must be a JSON object")
        job = cls(id=job_id)
        job._record(
            JobQueued,
            now,
            meta,
            job_type=job_type,
            payload=copy.deepcopy(payload),  # the caller's later edits must not touch the log
            max_attempts=max_attempts,
            priority=priority,
            available_at=now + timedelta(seconds=delay),
            idempotency_key=idempotency_key,
            queue=queue,
            concurrency_key=concurrency_key,
            retry_of=retry_of,
            reason=reason,
        )
        return job

    def retry_from(
        self, job_id: str, *, now: datetime, reason: str | None, key: str, meta: Meta = SYSTEM
    ) -> Job:
        """A new job that runs this finished one again: same type, payload, priority, max
        attempts, queue and concurrency key, with ``retry_of`` naming this job. This job
        records nothing: its history stays as it was. `InvalidCommand` unless it finished."""
        if not self.is_finished:
            raise InvalidCommand(
                reason=f"job {self.id} is {self.status}: only a finished job "
                "(completed, failed or cancelled) can be retried"
            )
        return Job.submit(
            job_id,
            self.job_type,
            self.payload,
            now=now,
            max_attempts=self.max_attempts,
            priority=self.priority,
            idempotency_key=key,
            queue=self.queue,
            concurrency_key=self.concurrency_key,
            retry_of=self.id,
            reason=reason,
            meta=meta,
        )

    def start(
        self, worker_id: str, lease_seconds: float, *, now: datetime, meta: Meta = SYSTEM
    ) -> Outcome:
        """A worker takes the job for a new attempt, leased until ``now + lease_seconds``."""
        if self.is_finished:
            return Outcome.ALREADY_FINISHED
        self._require("start")
        if self.available_at is not None and self.available_at > now:
            raise InvalidCommand(
                reason=f"job {self.id} is not available before {self.available_at}"
            )
        return self._record(
            JobStarted,
            now,
            meta,
            attempt=self.attempt + 1,
            worker_id=worker_id,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
        )

    def report_progress(
        self,
        attempt: int,
        percent: int,
        message: str | None = None,
        *,
        now: datetime,
        meta: Meta = SYSTEM,
    ) -> Outcome:
        if self.is_finished:
            return Outcome.ALREADY_FINISHED
        self._require("progress", attempt)
        if not 0 <= percent <= 100:
            raise InvalidCommand(reason=f"progress must be between 0 and 100, not {percent}")
        return self._record(
            JobProgressed, now, meta, attempt=attempt, percent=percent, message=message
        )

    def complete(self, attempt: int, result: Any, *, now: datetime, meta: Meta = SYSTEM) -> Outcome:
        if self.is_finished:
            return Outcome.ALREADY_FINISHED
        self._require("complete", attempt)
        started = self.started_at or now
        duration_ms = round((now - started).total_seconds() * 1000, 3)
        return self._record(
            JobCompleted, now, meta, attempt=attempt, result=result, duration_ms=duration_ms
        )

    def fail(
        self,
        error: JobError,
        attempt: int | None,
        *,
        now: datetime,
        policy: RetryPolicy,
        meta: Meta = SYSTEM,
    ) -> Outcome:
        """The one way a job fails: a retry if the policy allows it, else `JobFailed`.

        ``attempt`` is the worker's fencing token; None for an operator or the system
        acting on a job that is not running (an unknown job type fails from ``queued``).
        """
        if self.is_finished:
            return Outcome.ALREADY_FINISHED
        self._require("fail", attempt)
        fields: dict[str, Any] = {
            "attempt": self.attempt,
            "error_type": error.type_name,
            "error_code": error.code,
            "error_message": error.message,
            "error_category": error.category.value,
            "retryable": error.retryable,
        }
        retry = self.status == JobStatus.PROCESSING and policy.should_retry(
            error, self.attempt, self.max_attempts
        )
        if not retry:
            return self._record(JobFailed, now, meta, **fields)
        delay = policy.delay(error, self.attempt)
        return self._record(
            JobRetryScheduled,
            now,
            meta,
            available_at=now + timedelta(seconds=delay),
            delay_seconds=round(delay, 6),
            **fields,
        )

    def cancel(self, reason: str | None = None, *, now: datetime, meta: Meta = SYSTEM) -> Outcome:
        if self.is_finished:
            return Outcome.ALREADY_FINISHED
        return self._record(JobCancelled, now, meta, reason=reason, by=meta.actor)

    # ------------------------------------------------------------------ helpers

    def _require(self, trigger: str, attempt: int | None = None) -> None:
        """The machine allows ``trigger`` now, and ``attempt`` (if given) is running now.

        A worker's command carries the attempt it was leased: once that attempt is over
        (retry scheduled, or the job was taken over by another worker) it is refused.
        """
        if not lifecycle.allows(self.status, trigger):
            raise IllegalTransition(self.status, trigger)
        if attempt is not None and (attempt != self.attempt or self.status != JobStatus.PROCESSING):
            raise StaleAttempt(
                job_id=self.id, given=attempt, current=self.attempt, status=self.status
            )

    def _record(self, cls: type[Event], now: datetime, meta: Meta, **fields: Any) -> Outcome:
        # Every event of a job carries the job's trace context unless the command brings
        # its own: a worker's events join the trace the job was submitted in.
        event = cls.new(
            job_id=self.id,
            version=self.version + 1,
            occurred_at=now,
            actor=meta.actor,
            correlation_id=meta.correlation_id,
            traceparent=meta.traceparent or self.traceparent,
            prev_hash=self.last_hash,
            **fields,
        )
        # The one Machine's transition moves the job: the command's checks already ran,
        # so recording is applying (`next_status` reads the same table `fire` runs, at a
        # tenth of the cost of running the Machine on the worker's hot path).
        self.apply(event)
        self.pending.append(event)
        return Outcome.RECORDED
