"""The worker runtime: claim, run, heartbeat, reap, and one path for every outcome.

A worker claims available jobs in batches (one transaction each), runs their processors
on a pool of daemon threads, and hands every outcome back to its main loop: a result
becomes `complete`, any exception becomes `fail`, whose retry policy chooses between
`JobRetryScheduled` and `JobFailed`. Finished jobs are written in one transaction per
loop turn. A job of a type no processor handles goes through the same `fail`, from
``queued``. The main loop also renews leases (heartbeats write no events) and runs the
reaper, which fails jobs whose lease expired.

What reaches the main loop can be stored: a result outside the JSON domain
(`jobtrail.domain.json_values`) fails its job as `InvalidResult` in the processor's thread,
and U+0000 or lone surrogates in an error or progress message are escaped there. If a turn's
write is still refused for its data, each job's outcomes are written alone, so one bad
outcome fails its own job and holds no other hostage (`Worker._write_each_alone`).

The module is longer than the project's ~300 lines on purpose: `Worker` is one loop over
one piece of state (the jobs it holds, the outcomes not yet written, the jobs whose memory
may be stale), and claiming, writing outcomes, heartbeats and shutting down all read and
change it together. The pieces with no share in that state live apart (`reaper`, the
processor API in `jobtrail.processors.base`).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from jobtrail.domain.errors import (
    CommandRejected,
    ConcurrencyConflict,
    DatabaseUnavailable,
    InternalError,
    InvalidJsonValue,
    InvalidResult,
    JobError,
    JobNotFound,
    SchemaMissing,
    StorageError,
    UnknownJobType,
    WorkerShutdown,
    as_job_error,
)
from jobtrail.domain.job import Job, Meta, Outcome
from jobtrail.domain.json_values import check_json, storable_text
from jobtrail.domain.ports import Append, Clock, JobQueue, Lease, SystemClock
from jobtrail.domain.services import Command, JobService
from jobtrail.processors.base import JobContext, JobView
from jobtrail.processors.engine.reaper import Reaper
from jobtrail.processors.registry import Registry

log = logging.getLogger("jobtrail.worker")

BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0
"""Seconds a worker waits after the database failed, doubling up to the maximum."""
UNTIL_EMPTY_HORIZON = timedelta(seconds=60)
"""With --until-empty, queued jobs due later than this (delayed jobs) are not waited for."""
SHORT_JOB_SECONDS, SHORT_JOB_PREFETCH_FACTOR = 0.05, 4
"""Jobs that typically run under 50 ms are claimed four times as many at a time: holding
them costs little, and it spreads each commit over more jobs."""


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 4
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 10.0
    job_types: frozenset[str] | None = None
    until_empty: bool = False
    max_jobs: int | None = None
    poll_seconds: float = 0.05
    grace_seconds: float = 10.0
    reap_seconds: float = 1.0
    progress_seconds: float = 1.0
    prefetch: int = 4
    """Jobs claimed per processor thread: threads never wait for a claim, and one commit
    covers many jobs. Prefetched jobs are started (leased) while they wait."""


@dataclass
class WorkerStats:
    claimed: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    absorbed: int = 0
    reaped: int = 0
    failure_latencies: list[float] = field(default_factory=list)
    """Seconds from a processor raising to its job's failure being committed."""


@dataclass
class Running:
    job: Job
    ctx: JobContext
    started: float


@dataclass(frozen=True)
class Finished:
    job_id: str
    attempt: int
    elapsed: float
    result: Any = None
    error: JobError | None = None
    raised_at: float = 0.0


@dataclass(frozen=True)
class Progressed:
    job_id: str
    attempt: int
    percent: int
    message: str | None


class Worker:
    def __init__(
        self,
        service: JobService,
        queue_: JobQueue,
        registry: Registry,
        settings: WorkerSettings | None = None,
        *,
        worker_id: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.service = service
        self.queue = queue_
        self.registry = registry
        self.settings = settings or WorkerSettings()
        self.worker_id = worker_id or f"{socket.gethostname()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock or SystemClock()
        self.meta = Meta(actor=self.worker_id)
        self.stats = WorkerStats()
        self.reaper = Reaper(service, queue_, self.clock, actor=f"reaper@{self.worker_id}")
        self._running: dict[str, Running] = {}
        self._todo: queue.Queue[Running | None] = queue.Queue()
        self._done: queue.Queue[Finished | Progressed] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._typical_run: float | None = None
        """A moving average of how long this worker's processors run, in seconds."""
        self._carry: list[Finished | Progressed] = []
        """Outcomes a failed turn could not write, first in line for the next one."""
        self._stale: set[str] = set()
        """Held jobs whose in-memory state may hold events that were never written."""
        self._claim_next = False
        """The last turn wrote a failure without claiming: claim without waiting."""
        self._decided: dict[str, tuple[str, Any]] = {}
        """What the policy decided for a failed job: its status and when it is due again."""

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Stop claiming; running jobs get the grace period, then are handed back."""
        self._stop.set()

    def run(self) -> WorkerStats:
        with self.queue.holding():
            return self._run()

    def _run(self) -> WorkerStats:
        self._start_threads()
        log.info(
            "worker %s started (concurrency %d), running %s",
            self.worker_id,
            self.settings.concurrency,
            ", ".join(self.registry.job_types) or "no job types",
        )
        next_heartbeat = next_reap = time.monotonic()
        backoff = BACKOFF_MIN
        try:
            while not self._stop.is_set():
                try:
                    claimed = self._exchange()
                    now = time.monotonic()
                    if now >= next_heartbeat:
                        self._heartbeat()
                        next_heartbeat = now + self.settings.heartbeat_seconds
                    if now >= next_reap:
                        self.stats.reaped += self.reaper.reap_once()
                        next_reap = now + self.settings.reap_seconds
                    if self._finished_its_work(claimed):
                        break
                except StorageError as error:
                    log.warning("%s Trying again in %.1f s.", error, backoff)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    continue
                backoff = BACKOFF_MIN
                self._wait_for_results()
        finally:
            self._shut_down()
        log.info("worker %s stopped: %s", self.worker_id, self.stats)
        return self.stats

    # ------------------------------------------------------------------ claiming

    def _exchange(self, claiming: bool = True) -> int:
        """Write every outcome reported so far and claim what fits, in one transaction.

        Outcomes are applied to the jobs the worker holds in memory (it is the only writer
        of a job it holds, barring a cancel or the reaper); if one of them was changed by
        someone else the transaction fails on the version check, nothing is written, and
        the outcomes are written again one by one against the jobs' fresh state.
        """
        items = self._drain_done()
        steps: dict[str, list[Command]] = {}
        finished: dict[str, Finished] = {}
        for item in items:
            steps.setdefault(item.job_id, []).append(self._command_for(item))
            if isinstance(item, Finished):
                finished[item.job_id] = item
        # A failure is what someone waits for: its turn writes outcomes only (no claim
        # query, no jobs to start, fewer round trips); the next turn claims, at once and
        # whatever it carries, so a stream of failures cannot starve the claims.
        failing = any(item.error is not None for item in finished.values())
        defer_claim = claiming and failing and not self._claim_next
        self._claim_next = defer_claim
        room = self._room(len(finished)) if claiming and not defer_claim else 0
        if not steps and room <= 0:
            return 0
        stuck: StorageError | None = None
        try:
            results, appends = self._apply_in_memory(steps)
            try:
                claimed = self.queue.claim(
                    room, self.settings.job_types, self._start_or_refuse, appends
                )
            except ConcurrencyConflict:
                log.info(
                    "outcomes of %d job(s) conflicted with another writer; writing them one by one",
                    len(steps),
                )
                results, claimed = self._write_one_by_one(steps, finished), []
        except StorageError as error:
            # Nothing was written: keep the outcomes for the next turn, and reload the
            # jobs they were applied to in memory before applying them again.
            self._stale.update(steps)
            if not steps or not rejects_data(error):
                self._carry = items
                raise
            log.warning(
                "writing the outcomes of %d job(s) failed (%s); writing each job's alone",
                len(steps),
                error,
            )
            results, stuck = self._write_each_alone(steps, finished, items, error)
            claimed = []
        else:
            for append in appends:
                self._clear_pending(append.events[0].job_id)
        committed = time.monotonic()
        for job_id, item in finished.items():
            if job_id not in results:
                continue  # carried to the next turn
            self._running.pop(job_id, None)
            self._stale.discard(job_id)
            self._report(item, results[job_id], committed)
        self._take(claimed)
        if stuck is not None:
            raise stuck
        return len(claimed)

    def _room(self, finishing: int) -> int:
        per_thread = self.settings.prefetch
        if self._typical_run is not None and self._typical_run < SHORT_JOB_SECONDS:
            per_thread *= SHORT_JOB_PREFETCH_FACTOR  # short jobs: bigger turns, few commits
        room = self.settings.concurrency * per_thread - len(self._running) + finishing
        if self.settings.max_jobs is not None:
            room = min(room, self.settings.max_jobs - self.stats.claimed)
        return room

    def _drain_done(self) -> list[Finished | Progressed]:
        items, self._carry = self._carry, []
        while True:
            try:
                items.append(self._done.get_nowait())
            except queue.Empty:
                return items

    def _apply_in_memory(
        self, steps: dict[str, list[Command]]
    ) -> tuple[dict[str, Outcome | Exception], list[Append]]:
        results: dict[str, Outcome | Exception] = {}
        appends: list[Append] = []
        for job_id, commands in steps.items():
            if job_id in self._stale:
                self._running[job_id].job = self.service.get(job_id)
                self._stale.discard(job_id)
            job = self._running[job_id].job
            before = job.version
            try:
                results[job_id] = chain(commands)(job)
            except CommandRejected as error:
                results[job_id] = error
            if job.pending:
                appends.append(Append(list(job.pending), before))
        return results, appends

    def _write_one_by_one(
        self, steps: dict[str, list[Command]], finished: dict[str, Finished]
    ) -> dict[str, Outcome | Exception]:
        results = self.service.execute_many({j: chain(c) for j, c in steps.items()})
        for job_id in steps:
            if job_id not in finished and job_id in self._running:
                self._running[job_id].job = self.service.get(job_id)
        return results

    def _write_each_alone(
        self,
        steps: dict[str, list[Command]],
        finished: dict[str, Finished],
        items: list[Finished | Progressed],
        error: StorageError,
    ) -> tuple[dict[str, Outcome | Exception], StorageError | None]:
        """After a turn's write was refused for its data: one transaction per job.

        What the database takes is written. An outcome it refuses on its own is a bad
        outcome, not a bad database: a job's result or failure becomes a failure of that
        job (`InvalidResult`, or an `InternalError` quoting the failure that could not be
        stored), written alone, and a progress report is dropped. If the database took
        nothing at all, not even such a failure, it refuses everything (read-only,
        permissions): those outcomes are kept for the next turn, as for any storage error,
        and the error is returned to be raised once the rest is reported. Outcomes that hit
        a passing error (`DatabaseUnavailable`) are kept for the next turn too.

        Returns the outcome of each job whose outcome is settled (others are carried), and
        the error to raise, if any.
        """
        results: dict[str, Outcome | Exception] = {}
        refused: dict[str, StorageError] = {}
        carried: set[str] = set()
        for job_id, commands in steps.items():
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
                results[job_id] = self.service.execute(job_id, self._command_for(stand_in))
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
                "job %s: its outcome could not be stored (%s); failed instead", job_id, refusal
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
            )
        self._carry = [item for item in items if item.job_id in carried]
        return results, (error if carried and not written else None)

    def _clear_pending(self, job_id: str) -> None:
        running = self._running.get(job_id)
        if running is not None:
            running.job.pending.clear()

    def _take(self, claimed: list[Job]) -> None:
        for job in claimed:
            job.pending.clear()
            if job.status == "processing":
                self._dispatch(job)
            else:
                log.info("job %s marked failed: %s", job.id, job.error_message)
                self.stats.failed += 1
        self.stats.claimed += len(claimed)

    def _start_or_refuse(self, job: Job) -> Outcome:
        """The claim command: start a job we can run, fail one no processor handles."""
        if self.registry.get(job.job_type) is None:
            log.warning("job %s has unknown type %r", job.id, job.job_type)
            error = UnknownJobType(f"unknown job type {job.job_type!r}")
            return job.fail(
                error, None, now=self.clock.now(), policy=self.service.policy, meta=self.meta
            )
        return job.start(
            self.worker_id, self.settings.lease_seconds, now=self.clock.now(), meta=self.meta
        )

    def _dispatch(self, job: Job) -> None:
        view = JobView(job.id, job.job_type, job.payload, job.attempt, job.max_attempts)
        attempt = job.attempt

        def report(percent: int, message: str | None) -> None:
            if message is not None:  # what a processor says reaches the log, escaped
                message = storable_text(message if isinstance(message, str) else str(message))
            self._done.put(Progressed(job.id, attempt, percent, message))

        ctx = JobContext(view, report, self.settings.progress_seconds)
        running = Running(job, ctx, time.monotonic())
        self._running[job.id] = running
        self._todo.put(running)

    # ------------------------------------------------------------------ running

    def _start_threads(self) -> None:
        for n in range(self.settings.concurrency):
            thread = threading.Thread(target=self._work, name=f"jobtrail-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _work(self) -> None:
        while (running := self._todo.get()) is not None:
            self._done.put(self._process(running))

    def _process(self, running: Running) -> Finished:
        job, ctx = running.job, running.ctx
        processor = self.registry.get(job.job_type)
        assert processor is not None  # unknown types are failed at claim time
        log.info("started job %s (%s)", job.id, job.job_type)
        started = time.monotonic()
        try:
            result = processor.process(ctx.job, ctx)
            # Here, in the processor's thread: a result that cannot be stored fails its
            # job, and never reaches the main loop's write (where NaN stalled a PostgreSQL
            # worker's every turn, and {1: "a", "b": 2} crashed it while hashing).
            check_json(result, "result")
        except InvalidJsonValue as error:
            return self._failed(job, InvalidResult(f"{error.where}: {error.reason}"), started)
        except Exception as error:  # noqa: BLE001 - every exception is a failure
            return self._failed(job, as_job_error(error), started)
        return Finished(job.id, job.attempt, time.monotonic() - started, result=result)

    def _failed(self, job: Job, error: JobError, started: float) -> Finished:
        raised_at = time.monotonic()
        elapsed = raised_at - started
        error = storable(error)
        log.info("job %s failed after %.2f s: %s", job.id, elapsed, error.message)
        return Finished(job.id, job.attempt, elapsed, error=error, raised_at=raised_at)

    # ------------------------------------------------------------------ outcomes

    def _wait_for_results(self) -> None:
        if self._claim_next:
            return
        try:
            item = self._done.get(timeout=self.settings.poll_seconds)
        except queue.Empty:
            return
        self._carry.append(item)  # first in line: outcomes of a job keep their order

    def _command_for(self, item: Finished | Progressed) -> Command:
        now = self.clock.now
        meta = self.meta
        if isinstance(item, Progressed):
            return lambda job: job.report_progress(
                item.attempt, item.percent, item.message, now=now(), meta=meta
            )
        if item.error is None:
            return lambda job: job.complete(item.attempt, item.result, now=now(), meta=meta)
        error = item.error

        def fail(job: Job) -> Outcome:
            outcome = job.fail(
                error, item.attempt, now=now(), policy=self.service.policy, meta=meta
            )
            self._decided[job.id] = (job.status, job.available_at)
            return outcome

        return fail

    def _report(self, item: Finished, result: Outcome | Exception, committed: float) -> None:
        typical = item.elapsed if self._typical_run is None else self._typical_run
        self._typical_run = 0.9 * typical + 0.1 * item.elapsed
        if isinstance(result, Exception):
            self.stats.absorbed += 1
            log.warning(
                "job %s: outcome of attempt %d dropped: %s", item.job_id, item.attempt, result
            )
            return
        if result is Outcome.ALREADY_FINISHED:
            self.stats.absorbed += 1
            log.info(
                "job %s had already finished; outcome of attempt %d dropped",
                item.job_id,
                item.attempt,
            )
            return
        if item.error is None:
            self.stats.completed += 1
            log.info("job %s completed after %.2f s", item.job_id, item.elapsed)
            return
        self.stats.failure_latencies.append(committed - item.raised_at)
        status, available_at = self._decided.pop(item.job_id, ("failed", None))
        if status == "queued":
            self.stats.retried += 1
            log.info("job %s scheduled for retry at %s", item.job_id, available_at)
        else:
            self.stats.failed += 1
            log.info("job %s marked failed", item.job_id)

    # ------------------------------------------------------------------ leases

    def _heartbeat(self) -> None:
        if not self._running:
            return
        leases = [Lease(job_id, r.job.attempt) for job_id, r in self._running.items()]
        until = self.clock.now() + timedelta(seconds=self.settings.lease_seconds)
        held = self.queue.renew(self.worker_id, leases, until)
        for lease in leases:
            if lease.job_id not in held:
                running = self._running[lease.job_id]
                if not running.ctx.cancelled:
                    log.warning("job %s: lease lost (cancelled or taken over)", lease.job_id)
                    running.ctx.cancel()

    # ------------------------------------------------------------------ stopping

    def _finished_its_work(self, claimed: int) -> bool:
        if self._running or claimed:
            return False
        if self.settings.max_jobs is not None and self.stats.claimed >= self.settings.max_jobs:
            return True
        return self.settings.until_empty and not self._work_due_soon()

    def _work_due_soon(self) -> bool:
        due = self.queue.next_available_at(self.settings.job_types)
        return due is not None and due <= self.clock.now() + UNTIL_EMPTY_HORIZON

    def _shut_down(self) -> None:
        """Let running jobs finish within the grace period, then hand the rest back."""
        for unstarted in self._drain_todo():
            self._hand_back(unstarted)
        deadline = time.monotonic() + self.settings.grace_seconds
        next_heartbeat = time.monotonic() + self.settings.heartbeat_seconds
        while self._running and time.monotonic() < deadline:
            try:
                if time.monotonic() >= next_heartbeat:
                    self._heartbeat()
                    next_heartbeat = time.monotonic() + self.settings.heartbeat_seconds
                self._wait_for_results()
                self._exchange(claiming=False)
            except StorageError as error:
                log.warning("%s Trying again.", error)
                time.sleep(BACKOFF_MIN)
        for running in list(self._running.values()):
            self._hand_back(running)
        try:
            self._exchange(claiming=False)
        except StorageError as error:
            log.error(
                "could not hand back %d job(s) (%s); their leases will expire and the "
                "reaper will retry them",
                len(self._running),
                error,
            )
        for _ in self._threads:
            self._todo.put(None)

    def _drain_todo(self) -> list[Running]:
        drained: list[Running] = []
        while True:
            try:
                item = self._todo.get_nowait()
            except queue.Empty:
                return drained
            if item is not None:
                drained.append(item)

    def _hand_back(self, running: Running) -> None:
        """A retryable failure, so another worker takes the job up again."""
        running.ctx.cancel()
        now = time.monotonic()
        error = WorkerShutdown()
        self._done.put(
            Finished(
                running.job.id,
                running.job.attempt,
                now - running.started,
                error=error,
                raised_at=now,
            )
        )


def chain(commands: list[Command]) -> Command:
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
    without its schema (a refusal may be of one outcome's data: `_write_each_alone`)."""
    return not isinstance(error, DatabaseUnavailable | SchemaMissing)


def unstorable(item: Finished, error: StorageError) -> JobError:
    """The failure recorded instead of an outcome the database refused on its own."""
    reason = storable_text(str(error))
    if item.error is None:
        return InvalidResult(f"the result could not be stored: {reason}")
    original = item.error
    said = storable_text(f"{original.type_name} ({original.code}): {original.message}")
    return InternalError(f"the failure could not be stored ({reason}); it was {said[:1000]}")


def storable(error: JobError) -> JobError:
    """``error``, or the same error with U+0000 and lone surrogates in its texts escaped.

    An exception's message may hold them (a file name decoded with ``surrogateescape``, a
    C library's NUL): PostgreSQL and the hash refuse them, and the failure must be stored.
    """
    texts = (error.type_name, error.code, error.message)
    type_name, code, message = (
        storable_text(text if isinstance(text, str) else str(text)) for text in texts
    )
    if (type_name, code, message) == texts:
        return error
    return _Escaped(error, type_name, code, message)


class _Escaped(JobError):
    """A processor's error with its texts escaped; its code, category, retryable and
    retry-after as they were."""

    def __init__(self, original: JobError, type_name: str, code: str, message: str) -> None:
        super().__init__(message, retry_after=original.retry_after)
        self._type_name = type_name
        vars(self).update(code=code, category=original.category, retryable=original.retryable)

    @property
    def type_name(self) -> str:
        return self._type_name
