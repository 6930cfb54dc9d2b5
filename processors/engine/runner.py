"""The processor side of a worker: threads that run processors, and whatever a processor
does becomes a `Finished` (see `failures` for how a result or an exception is made safe).

A thread takes a `Running` job off the to-do queue, runs its processor and puts the job's
progress reports and then its `Finished` on the done queue, in the order they were made:
the report the throttle held back last goes right before the `Finished`
(`JobContext.finish`), and nothing the processor reports after that is sent. `process`
never raises, so a processor cannot end its thread. Should a thread die anyway (a bug of
ours, an interpreter in trouble), the main loop notices (`check`): the job it held fails
through the same `fail` path, and another thread takes its place.

With OpenTelemetry installed, each attempt runs inside its own span, a child of the trace
the job was submitted in (`tracing`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from jobtrail.domain.errors import InvalidResult, JobError, UnknownJobType, WorkerShutdown
from jobtrail.domain.job import Job
from jobtrail.processors.base import JobContext, JobView
from jobtrail.processors.engine.failures import (
    LOST,
    MAX_PROGRESS_MESSAGE,
    THREAD_DIED,
    checked_result,
    failure_of,
    log_fields,
    safe_text,
    type_name_of,
)
from jobtrail.processors.engine.outcomes import Finished, Progressed, Reported, Running
from jobtrail.processors.engine.tracing import AttemptTracer
from jobtrail.processors.registry import Registry

log = logging.getLogger("jobtrail.worker")


class ProcessorThreads:
    def __init__(
        self,
        registry: Registry,
        todo: queue.Queue[Running | None],
        done: queue.Queue[Reported],
        concurrency: int,
        progress_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.todo = todo
        self.done = done
        self.concurrency = concurrency
        self.progress_seconds = progress_seconds
        self.clock = clock
        """What progress reports are throttled by (tests pass a clock they move)."""
        self._threads: list[threading.Thread] = []
        self._holding: dict[int, Running] = {}
        """The job each thread (by its number) is running."""
        self._stopping = False
        self.tracer = AttemptTracer()
        """One span per attempt when OpenTelemetry is installed (imported once, here)."""

    # ------------------------------------------------------------------ the pool

    def start(self) -> None:
        self._threads = [self._spawn(n) for n in range(self.concurrency)]

    def check(self) -> None:
        """Notice threads that died: fail the job each held, and start another thread."""
        if self._stopping:
            return
        for n, thread in enumerate(self._threads):
            if thread.is_alive():
                continue
            lost = self._holding.pop(n, None)
            if lost is not None:
                log.error(
                    "the thread running job %s died; failing the job, starting another thread",
                    lost.job.id,
                    extra=log_fields(
                        lost.job.id,
                        "thread_died",
                        job_type=lost.job.job_type,
                        attempt=lost.job.attempt,
                        error=THREAD_DIED,
                    ),
                )
                self.done.put(_lost(lost, THREAD_DIED))
            else:
                log.error("processor thread %s died; starting another", thread.name)
            self._threads[n] = self._spawn(n)

    def stop(self) -> None:
        """Let each thread end once it has finished its job (a running processor is not
        interrupted: the threads are daemons, so it does not hold the process up)."""
        self._stopping = True
        for _ in self._threads:
            self.todo.put(None)

    def drain_todo(self) -> list[Running]:
        """Take back the jobs no thread has started."""
        drained: list[Running] = []
        while True:
            try:
                item = self.todo.get_nowait()
            except queue.Empty:
                return drained
            if item is not None:
                drained.append(item)

    def hand_back(self, running: Running) -> None:
        """Give up a job at shutdown: a retryable failure, so another worker takes it up.
        Its processor, if running, is told to stop, and what it reports later is dropped."""
        running.ctx.cancel()
        running.ctx.finish(flush=False)
        self.done.put(_lost(running, WorkerShutdown()))

    def _spawn(self, n: int) -> threading.Thread:
        thread = threading.Thread(target=self._work, args=(n,), name=f"jobtrail-{n}", daemon=True)
        thread.start()
        return thread

    def _work(self, n: int) -> None:
        while (running := self.todo.get()) is not None:
            self._holding[n] = running
            self.done.put(self.process(running))
            del self._holding[n]

    # ------------------------------------------------------------------ one attempt

    def context_for(self, job: Job) -> JobContext:
        """The context a job's processor sees: its progress reports go to the done queue."""
        view = JobView(job.id, job.job_type, job.payload, job.attempt, job.max_attempts)
        job_id, attempt, done = job.id, job.attempt, self.done

        def report(percent: int, message: str | None) -> None:
            if message is not None:  # what a processor says reaches the log: bounded, escaped
                message = safe_text(message, MAX_PROGRESS_MESSAGE)
            done.put(Progressed(job_id, attempt, percent, message))

        return JobContext(view, report, self.progress_seconds, clock=self.clock)

    def process(self, running: Running) -> Finished:
        """Run one attempt; whatever the processor does becomes a `Finished`. Never raises."""
        try:
            return self.tracer.run(running.job, lambda: self._attempt(running))
        except BaseException:  # noqa: BLE001 - the last line: a failure made in advance
            return _lost(running, LOST)

    def _attempt(self, running: Running) -> Finished:
        job, ctx = running.job, running.ctx
        processor = self.registry.get(job.job_type)
        log.info(
            "started job %s (%s)",
            job.id,
            job.job_type,
            extra=log_fields(job.id, "attempt_started", job_type=job.job_type, attempt=job.attempt),
        )
        started = time.monotonic()
        try:
            if processor is None:  # unknown types are failed at claim time; never here
                raise UnknownJobType(f"unknown job type {job.job_type!r}")
            result = processor.process(ctx.job, ctx)
        except BaseException as error:  # noqa: BLE001 - every exception fails its job (failures)
            raised_at = time.monotonic()
            failure = failure_of(error)
            del error  # the traceback holds the processor's frames
            ctx.finish()
            return self._failed(job, failure, started, raised_at)
        try:
            # Here, in the processor's thread: a result that cannot be stored fails its
            # job, and never reaches the main loop's write (where NaN stalled a PostgreSQL
            # worker's every turn, and {1: "a", "b": 2} crashed it while hashing).
            result = checked_result(result)
        except InvalidResult as invalid:
            ctx.finish()
            return self._failed(job, failure_of(invalid), started, time.monotonic())
        except BaseException as error:  # noqa: BLE001 - checking a hostile object failed
            unreadable = InvalidResult(f"result: could not be checked ({type_name_of(error)})")
            del error
            ctx.finish()
            return self._failed(job, unreadable, started, time.monotonic())
        ctx.finish()
        return Finished(job.id, job.attempt, time.monotonic() - started, result=result)

    def _failed(self, job: Job, error: JobError, started: float, raised_at: float) -> Finished:
        elapsed = raised_at - started
        log.info(
            "job %s failed after %.2f s: %s",
            job.id,
            elapsed,
            error.message,
            extra=log_fields(
                job.id, "attempt_failed", job_type=job.job_type, attempt=job.attempt, error=error
            ),
        )
        return Finished(job.id, job.attempt, elapsed, error=error, raised_at=raised_at)


def _lost(running: Running, error: JobError) -> Finished:
    now = time.monotonic()
    return Finished(
        running.job.id, running.job.attempt, now - running.started, error=error, raised_at=now
    )
