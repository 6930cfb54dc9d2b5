"""Outcome writing: what the processor threads reported becomes commands on the jobs the
worker holds, applied in memory for the turn's one transaction, or written one job at a
time when that transaction cannot be; and the stats and log lines say what was recorded.

Each job's reports are applied in the order they were made (progress, then its result or
failure); a report for a job the worker no longer holds, or after the job's `Finished`, is
dropped. An outcome that cannot be recorded at all (a command that raises instead of
recording or refusing) fails its job alone, and if even that cannot be recorded the worker
lets go of the job, so its lease ends and the reaper fails it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from jobtrail.domain.errors import (
    CommandRejected,
    DatabaseUnavailable,
    InternalError,
    JobNotFound,
    SchemaMissing,
    StorageError,
)
from jobtrail.domain.job import Job, Meta, Outcome
from jobtrail.domain.ports import Append, Clock
from jobtrail.domain.services import Command, JobService
from jobtrail.processors.engine.failures import log_fields, type_name_of, unstorable
from jobtrail.processors.engine.observer import NO_OBSERVER, WorkerObserver
from jobtrail.processors.engine.outcomes import Finished, Progressed, Reported, Running
from jobtrail.processors.engine.settings import WorkerStats

log = logging.getLogger("jobtrail.worker")

Steps = dict[str, list[Command]]
Results = dict[str, Outcome | Exception]


class OutcomeWriter:
    def __init__(
        self,
        service: JobService,
        held: dict[str, Running],
        stats: WorkerStats,
        clock: Clock,
        meta: Meta,
        observer: WorkerObserver = NO_OBSERVER,
    ) -> None:
        self.service = service
        self.held = held
        """The worker's jobs, shared with it: claimed and not yet finished."""
        self.stats = stats
        self.clock = clock
        self.meta = meta
        self.observer = observer
        self.carry: list[Reported] = []
        """Outcomes a failed turn could not write, first in line for the next one."""
        self.stale: set[str] = set()
        """Held jobs whose in-memory state may hold events that were never written."""
        self.decided: dict[str, tuple[str, datetime | None]] = {}
        """What the policy decided for a failed job: its status and when it is due again."""
        self.typical_run: float | None = None
        """A moving average of how long this worker's processors run, in seconds."""

    def collect(self, items: list[Reported]) -> tuple[Steps, dict[str, Finished]]:
        """Each held job's commands, in the order reported, and its `Finished` if any."""
        steps: Steps = {}
        finished: dict[str, Finished] = {}
        for item in items:
            if item.job_id not in self.held or item.job_id in finished:
                log.debug("job %s: a report after its attempt ended dropped", item.job_id)
                continue
            steps.setdefault(item.job_id, []).append(self.command_for(item))
            if isinstance(item, Finished):
                finished[item.job_id] = item
        return steps, finished

    def command_for(self, item: Reported) -> Command:
        now, meta = self.clock.now, self.meta
        if isinstance(item, Progressed):
            return lambda job: job.report_progress(
                item.attempt, item.percent, item.message, now=now(), meta=meta
            )
        if item.error is None:
            return lambda job: job.complete(item.attempt, item.result, now=now(), meta=meta)
        error = item.error

        def fail(job: Job) -> Outcome:
            policy = self.service.policy
            outcome = job.fail(error, item.attempt, now=now(), policy=policy, meta=meta)
            self.decided[job.id] = (job.status, job.available_at)
            return outcome

        return fail

    def apply_in_memory(
        self, steps: Steps, finished: dict[str, Finished]
    ) -> tuple[Results, list[Append]]:
        results: Results = {}
        appends: list[Append] = []
        for job_id, commands in steps.items():
            running = self.held[job_id]
            if job_id in self.stale:
                running.job = self.service.get(job_id)
                self.stale.discard(job_id)
            job = running.job
            before = job.version
            try:
                results[job_id] = chain(commands)(job)
            except CommandRejected as error:
                results[job_id] = error
            except Exception as error:  # noqa: BLE001 - a bug or an unforeseen value: this job only
                results[job_id] = self._unrecordable(job, steps, finished, error)
            if job.pending:
                appends.append(Append(list(job.pending), before))
        return results, appends

    def _unrecordable(
        self, job: Job, steps: Steps, finished: dict[str, Finished], error: Exception
    ) -> Outcome | Exception:
        """A command raised instead of recording: fail the job instead, or let it go."""
        item = finished.get(job.id)
        log.error(
            "job %s: its outcome could not be recorded (%s)%s",
            job.id,
            type_name_of(error),
            "; failing it instead" if item else "; progress report(s) dropped",
            extra=log_fields(job.id, "outcome_unrecordable", job_type=job.job_type),
        )
        if item is None:
            steps[job.id] = []
            return Outcome.ALREADY_FINISHED
        said = f"the worker could not record the processor's outcome ({type_name_of(error)})"
        stand_in = replace(item, result=None, error=InternalError(said))
        command = self.command_for(stand_in)
        try:
            outcome = command(job)
        except Exception as again:  # noqa: BLE001 - let go: the reaper fails the job
            log.error(
                "job %s: not even a failure could be recorded; letting it go",
                job.id,
                extra=log_fields(job.id, "outcome_dropped", job_type=job.job_type),
            )
            steps[job.id] = []
            return again
        steps[job.id], finished[job.id] = [command], stand_in
        return outcome

    def write_one_by_one(self, steps: Steps, finished: dict[str, Finished]) -> Results:
        results = self.service.execute_many({j: chain(c) for j, c in steps.items() if c})
        for job_id in steps:
            if job_id not in finished and job_id in self.held:
                self.held[job_id].job = self.service.get(job_id)
        return results

    def write_each_alone(
        self, steps: Steps, finished: dict[str, Finished], items: list[Reported]
    ) -> tuple[Results, bool]:
        """After a turn's write was refused for its data: one transaction per job.

        What the database takes is written. An outcome it refuses on its own is a bad
        outcome, not a bad database: a job's result or failure becomes a failure of that
        job (`InvalidResult`, or an `InternalError` quoting the failure that could not be
        stored), written alone, and a progress report is dropped. If the database took
        nothing at all, not even such a failure, it refuses everything (read-only,
        permissions): those outcomes are kept for the next turn, as for any storage error,
        and the turn's error is to be raised once the rest is reported. Outcomes that hit
        a passing error (`DatabaseUnavailable`) are kept for the next turn too.

        Returns the outcome of each job whose outcome is settled (others are carried), and
        whether the turn's error is to be raised.
        """
        results: Results = {}
        refused: dict[str, StorageError] = {}
        carried: set[str] = set()
        for job_id, commands in steps.items():
            if not commands:  # let go of (`_unrecordable`)
                results[job_id] = Outcome.ALREADY_FINISHED
                continue
            try:
                results[job_id] = self.service.execute(job_id, chain(commands))
            except (CommandRejected, JobNotFound) as rejected:
                results[job_id] = rejected
            except StorageError as alone:
                if rejects_data(alone):
                    refused[job_id] = alone
                else:
                    carried.add(job_id)
        written = any(result is Outcome.RECORDED for result in results.values())
        undone: dict[str, StorageError] = {}
        for job_id, refusal in refused.items():
            item = finished.get(job_id)
            if item is None:
                log.warning("job %s: progress report(s) dropped, not storable: %s", job_id, refusal)
                continue
            stand_in = replace(
                item,
                result=None,
                error=unstorable(item, refusal),
                raised_at=item.raised_at or time.monotonic(),
            )
            try:
                results[job_id] = self.service.execute(job_id, self.command_for(stand_in))
            except (CommandRejected, JobNotFound) as rejected:
                results[job_id] = rejected
                continue
            except StorageError as again:
                if rejects_data(again):
                    undone[job_id] = again
                else:
                    carried.add(job_id)
                continue
            written = written or results[job_id] is Outcome.RECORDED
            finished[job_id] = stand_in
            log.warning(
                "job %s: its outcome could not be stored (%s); failed instead",
                job_id,
                refusal,
                extra=log_fields(job_id, "outcome_unstorable", error=stand_in.error),
            )
        for job_id, second in undone.items():
            if not written:
                carried.add(job_id)
                continue
            results[job_id] = second
            log.error(
                "job %s: neither its outcome nor a failure instead could be stored (%s); "
                "dropped: the reaper fails or retries the job once its lease ends",
                job_id,
                second,
                extra=log_fields(job_id, "outcome_dropped"),
            )
        self.carry = [item for item in items if item.job_id in carried]
        return results, bool(carried) and not written

    def clear_pending(self, job_id: str) -> None:
        running = self.held.get(job_id)
        if running is not None:
            running.job.pending.clear()

    def report(
        self,
        item: Finished,
        result: Outcome | Exception,
        committed: float,
        running: Running | None = None,
    ) -> None:
        """Count and log what was recorded for a finished job (``running``: the job as held,
        for its type)."""
        typical = item.elapsed if self.typical_run is None else self.typical_run
        self.typical_run = 0.9 * typical + 0.1 * item.elapsed
        decided = self.decided.pop(item.job_id, None)
        if isinstance(result, Exception):
            self.stats.absorbed += 1
            log.warning(
                "job %s: outcome of attempt %d dropped: %s",
                item.job_id,
                item.attempt,
                result,
                extra=log_fields(item.job_id, "outcome_dropped", attempt=item.attempt),
            )
            return
        if result is Outcome.ALREADY_FINISHED:
            self.stats.absorbed += 1
            log.info(
                "job %s had already finished; outcome of attempt %d dropped",
                item.job_id,
                item.attempt,
                extra=log_fields(item.job_id, "already_finished", attempt=item.attempt),
            )
            return
        job_type = running.job.job_type if running is not None else ""
        if item.error is None:
            self.stats.completed += 1
            self.observer.completed(job_type, item.elapsed)
            log.info(
                "job %s completed after %.2f s",
                item.job_id,
                item.elapsed,
                extra=log_fields(
                    item.job_id, "JobCompleted", job_type=job_type or None, attempt=item.attempt
                ),
            )
            return
        latency = committed - item.raised_at
        self.stats.failure_latencies.append(latency)
        status, available_at = decided or ("failed", None)
        self.observer.failed(
            job_type,
            item.error,
            retried=status == "queued",
            run_seconds=item.elapsed,
            committed_after=latency,
        )
        if status == "queued":
            self.stats.retried += 1
            log.info(
                "job %s scheduled for retry at %s",
                item.job_id,
                available_at,
                extra=log_fields(
                    item.job_id,
                    "JobRetryScheduled",
                    job_type=job_type or None,
                    attempt=item.attempt,
                    error=item.error,
                ),
            )
        else:
            self.stats.failed += 1
            log.info(
                "job %s marked failed",
                item.job_id,
                extra=log_fields(
                    item.job_id,
                    "JobFailed",
                    job_type=job_type or None,
                    attempt=item.attempt,
                    error=item.error,
                ),
            )


def chain(commands: list[Command]) -> Callable[[Job], Outcome]:
    """One command that runs ``commands`` in order; the last outcome counts."""

    def run(job: Job) -> Outcome:
        outcome = Outcome.ALREADY_FINISHED
        for command in commands:
            try:
                outcome = command(job)
            except CommandRejected:
                if command is commands[-1]:
                    raise
        return outcome

    return run


def rejects_data(error: StorageError) -> bool:
    """Whether the database refused what was written, rather than being out of reach or
    without its schema (a refusal may be of one outcome's data: `write_each_alone`)."""
    return not isinstance(error, DatabaseUnavailable | SchemaMissing)
