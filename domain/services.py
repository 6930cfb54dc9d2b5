"""Use cases: load a job, run one command on it, append what it recorded.

A concurrency conflict means someone else changed the job between our load and our
append; the command is run again on the fresh state, so its checks see the truth (a
second `fail` then finds the job finished and records nothing).

One module, a little over 300 lines, on purpose: every use case shares the same
load-decide-append loop and its conflict handling (`execute`, the idempotency-key retry of
`submit_many`, which `retry` reuses), and they read best side by side.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobtrail.domain import limits, tracecontext
from jobtrail.domain.errors import (
    CommandRejected,
    ConcurrencyConflict,
    DuplicateIdempotencyKey,
    InvalidField,
    InvalidJsonValue,
    JobError,
    JobNotFound,
)
from jobtrail.domain.events import DEFAULT_QUEUE
from jobtrail.domain.ids import time_ordered_id
from jobtrail.domain.job import SYSTEM, Job, Meta, Outcome
from jobtrail.domain.json_values import check_json
from jobtrail.domain.lineage import RetryCounts, histories, retries_holding, retry_key
from jobtrail.domain.ports import Append, Clock, EventStore, SystemClock
from jobtrail.domain.retry import RetryPolicy

log = logging.getLogger(__name__)

Command = Callable[[Job], Outcome]
KeyLookup = Callable[[Collection[str]], dict[str, str]]
"""Which of these idempotency keys are taken, and by which job."""


@dataclass(frozen=True)
class JobSpec:
    """What a product service asks for when it submits a job.

    `check_spec` holds it to the limits of `jobtrail.domain.limits` when it is submitted.
    """

    job_type: str
    payload: dict[str, Any] = field(default_factory=dict)
    max_attempts: int = 3
    priority: int = 0
    delay: float = 0.0
    idempotency_key: str | None = None
    queue: str = DEFAULT_QUEUE
    concurrency_key: str | None = None


@dataclass
class JobService:
    """The commands product services and workers issue, against any `EventStore`."""

    store: EventStore
    find_by_idempotency_keys: KeyLookup
    clock: Clock = field(default_factory=SystemClock)
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    max_conflict_retries: int = 20

    def submit(self, spec: JobSpec, meta: Meta = SYSTEM) -> str:
        """Queue a job and return its id; the same id again for a known idempotency key."""
        (job_id,) = self.submit_many([spec], meta)
        return job_id

    def submit_many(self, specs: Sequence[JobSpec], meta: Meta = SYSTEM) -> list[str]:
        """Queue several jobs in one transaction; ids in the order of ``specs``.

        A spec whose idempotency key is already taken yields that job's id and records
        nothing. If another submitter takes a key in the meantime, the batch is retried.
        Every spec is checked first (`check_spec`): a field beyond its limits is refused
        with `InvalidField`, a payload outside the JSON domain with `InvalidJsonValue`,
        before anything is read or written.
        """
        check_meta(meta)
        for index, spec in enumerate(specs):
            check_spec(spec, "" if len(specs) == 1 else f"specs[{index}].")
        for _ in range(self.max_conflict_retries):
            keys = {s.idempotency_key for s in specs if s.idempotency_key is not None}
            known = self.find_by_idempotency_keys(keys) if keys else {}
            now = self.clock.now()
            ids: list[str] = []
            appends: list[Append] = []
            for spec in specs:
                key = spec.idempotency_key
                if key is not None and key in known:
                    ids.append(known[key])
                    continue
                job = self._new_job(spec, now, meta)
                if key is not None:
                    known[key] = job.id
                ids.append(job.id)
                appends.append(Append(job.pending, 0))
            try:
                self.store.append_batch(appends)
            except DuplicateIdempotencyKey:
                log.debug("an idempotency key was taken concurrently; submitting again")
                continue
            return ids
        raise DuplicateIdempotencyKey(key="(gave up after retries)")

    @staticmethod
    def _new_job(spec: JobSpec, now: datetime, meta: Meta) -> Job:
        return Job.submit(
            time_ordered_id(),
            spec.job_type,
            spec.payload,
            now=now,
            max_attempts=spec.max_attempts,
            priority=spec.priority,
            delay=spec.delay,
            idempotency_key=spec.idempotency_key,
            queue=spec.queue,
            concurrency_key=spec.concurrency_key,
            meta=meta,
        )

    def retry(
        self,
        job_id: str,
        finished_retries: RetryCounts,
        reason: str | None = None,
        meta: Meta = SYSTEM,
    ) -> str:
        """Queue a finished job again as a new job; returns the new job's id."""
        (new_id,) = self.retry_many([job_id], finished_retries, reason, meta)
        return new_id

    def retry_many(
        self,
        job_ids: Sequence[str],
        finished_retries: RetryCounts,
        reason: str | None = None,
        meta: Meta = SYSTEM,
    ) -> list[str]:
        """Queue finished jobs again as new jobs, in one transaction (all or none); the new
        ids in the order of ``job_ids``. The originals record nothing.

        Each retry's idempotency key is `retry_key` (``finished_retries`` counts them, from
        the `job` table): a job whose retry has not finished yet yields that retry's id
        again, and a request that loses the race for the key to a concurrent one returns
        the winner's id. `JobNotFound` for an unknown id and `InvalidCommand` for a job that
        has not finished, before anything is written.
        """
        limits.check_optional(limits.REASON, reason, "reason")
        check_meta(meta)
        originals = {  # finished jobs change no more: read once
            job_id: Job.from_history(job_id, events)
            for job_id, events in histories(self.store, job_ids).items()
        }
        counts = finished_retries(list(originals))
        keys = {job_id: retry_key(job_id, counts.get(job_id, 0)) for job_id in originals}
        for _ in range(self.max_conflict_retries):  # the keys stay: a loser finds the winner
            known = retries_holding(self.store, self.find_by_idempotency_keys, keys)
            now = self.clock.now()
            ids: list[str] = []
            appends: list[Append] = []
            for job_id in job_ids:
                key = keys[job_id]
                retry = originals[job_id].retry_from(
                    time_ordered_id(), now=now, reason=reason, key=key, meta=meta
                )  # checks that the original finished, even when its retry is known
                if key not in known:
                    known[key] = retry.id
                    appends.append(Append(retry.pending, 0))
                ids.append(known[key])
            try:
                self.store.append_batch(appends)
            except DuplicateIdempotencyKey:
                log.debug("a concurrent request retried the same job; looking up its retry")
                continue
            log.info("retried %d job(s) as %d new job(s)", len(job_ids), len(appends))
            return ids
        raise DuplicateIdempotencyKey(key="(gave up after retries)")

    def get(self, job_id: str) -> Job:
        events = self.store.load(job_id)
        if not events:
            raise JobNotFound(job_id=job_id)
        return Job.from_history(job_id, events)

    def start(
        self, job_id: str, worker_id: str, lease_seconds: float, meta: Meta = SYSTEM
    ) -> Outcome:
        return self.execute(
            job_id, lambda job: job.start(worker_id, lease_seconds, now=self.clock.now(), meta=meta)
        )

    def report_progress(
        self,
        job_id: str,
        attempt: int,
        percent: int,
        message: str | None = None,
        meta: Meta = SYSTEM,
    ) -> Outcome:
        return self.execute(
            job_id,
            lambda job: job.report_progress(
                attempt, percent, message, now=self.clock.now(), meta=meta
            ),
        )

    def complete(self, job_id: str, attempt: int, result: Any, meta: Meta = SYSTEM) -> Outcome:
        """Record a result; `InvalidJsonValue` if it is outside the JSON domain."""
        check_json(result, "result")
        return self.execute(
            job_id, lambda job: job.complete(attempt, result, now=self.clock.now(), meta=meta)
        )

    def fail(
        self, job_id: str, error: JobError, attempt: int | None, meta: Meta = SYSTEM
    ) -> Outcome:
        return self.execute(
            job_id,
            lambda job: job.fail(
                error, attempt, now=self.clock.now(), policy=self.policy, meta=meta
            ),
        )

    def cancel(self, job_id: str, reason: str | None = None, meta: Meta = SYSTEM) -> Outcome:
        """Cancel a queued or running job; ``reason`` and ``meta`` are checked first."""
        limits.check_optional(limits.REASON, reason, "reason")
        check_meta(meta)
        return self.execute(job_id, lambda job: job.cancel(reason, now=self.clock.now(), meta=meta))

    def execute_many(self, commands: Mapping[str, Command]) -> dict[str, Outcome | Exception]:
        """Run one command per job and append everything in one transaction.

        The fast path for a worker's finished jobs. If the batch conflicts with someone
        else's write, each command is run again on its own. A command that is refused
        (or a job that vanished) is reported in place of its outcome, not raised.
        """
        histories = self.store.load_many(list(commands))
        results: dict[str, Outcome | Exception] = {}
        appends: list[Append] = []
        for job_id, command in commands.items():
            try:
                if job_id not in histories:
                    raise JobNotFound(job_id=job_id)
                job = Job.from_history(job_id, histories[job_id])
                results[job_id] = command(job)
            except (CommandRejected, JobNotFound) as error:
                results[job_id] = error
                continue
            if job.pending:
                appends.append(Append(job.pending, job.version - len(job.pending)))
        try:
            self.store.append_batch(appends)
        except ConcurrencyConflict:
            log.debug("a batch of %d commands conflicted; running them one by one", len(appends))
            return {job_id: self._execute_reporting(job_id, c) for job_id, c in commands.items()}
        return results

    def _execute_reporting(self, job_id: str, command: Command) -> Outcome | Exception:
        try:
            return self.execute(job_id, command)
        except (CommandRejected, JobNotFound) as error:
            return error

    def execute(self, job_id: str, command: Command) -> Outcome:
        """Run ``command`` on the current state of the job and append what it recorded."""
        for _ in range(self.max_conflict_retries):
            job = self.get(job_id)
            outcome = command(job)
            if outcome is not Outcome.RECORDED:
                log.info("job %s is already %s; command recorded nothing", job_id, job.status)
                return outcome
            try:
                self.store.append(job.pending, expected_version=job.version - len(job.pending))
            except ConcurrencyConflict:
                log.debug("job %s changed concurrently; running the command again", job_id)
                continue
            return outcome
        raise ConcurrencyConflict(job_id=job_id, expected="(gave up after retries)")


def check_spec(spec: JobSpec, where: str = "") -> None:
    """Every field of ``spec`` within `jobtrail.domain.limits`; ``where`` prefixes the field
    names in the message (``"specs[2]."`` in a batch).

    `InvalidField` for a job type, number or key beyond its limits, `InvalidJsonValue` for
    a payload outside the JSON domain (both `InvalidCommand`).
    """
    if not isinstance(spec, JobSpec):
        raise InvalidField(
            field=where.rstrip(".") or "spec",
            reason=f"must be a JobSpec, not a {type(spec).__name__}",
        )
    limits.JOB_TYPE.check(spec.job_type, f"{where}job_type")
    check_payload(spec.payload, f"{where}payload")
    limits.check_payload_size(spec.payload, f"{where}payload")
    limits.MAX_ATTEMPTS.check(spec.max_attempts, f"{where}max_attempts")
    limits.PRIORITY.check(spec.priority, f"{where}priority")
    limits.DELAY.check(spec.delay, f"{where}delay")
    limits.check_optional(limits.IDEMPOTENCY_KEY, spec.idempotency_key, f"{where}idempotency_key")
    limits.QUEUE.check(spec.queue, f"{where}queue")
    limits.check_optional(limits.CONCURRENCY_KEY, spec.concurrency_key, f"{where}concurrency_key")


def check_meta(meta: Meta) -> None:
    """Who issues a command: an actor and an optional correlation id, each 1-200 characters
    both backends store, and an optional W3C traceparent (they are written in every event's
    metadata)."""
    if not isinstance(meta, Meta):
        raise InvalidField(field="meta", reason=f"must be a Meta, not a {type(meta).__name__}")
    limits.ACTOR.check(meta.actor, "meta.actor")
    limits.check_optional(limits.CORRELATION_ID, meta.correlation_id, "meta.correlation_id")
    tracecontext.check_optional(meta.traceparent, "meta.traceparent")


def check_payload(payload: object, where: str = "payload") -> None:
    """A job's payload is a JSON object in the accepted domain, else `InvalidJsonValue`."""
    if not isinstance(payload, dict):
        raise InvalidJsonValue(
            where=where, reason=f"must be a JSON object (a dict), not {type(payload).__name__}"
        )
    check_json(payload, where)
