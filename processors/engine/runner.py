"""The processor side of a worker: threads and an event loop that run processors, and
whatever a processor does becomes a `Finished` (see `failures` for how a result or an
exception is made safe).

A thread takes a `Running` job off the to-do queue. A plain processor runs on that thread;
an ``async def`` one is handed to the worker's event loop (`event_loop`), started the first
time one is, and the thread goes back for the next job. Either way the job's progress
reports and then its one `Finished` go on the done queue, in the order they were made: the
report the throttle held back last goes right before the `Finished` (`JobContext.finish`),
and nothing the processor reports after that is sent. The main loop cannot tell which kind
ran. Each attempt puts one `Finished` (`_settle`): whoever ends it first — the processor,
a hand-back at shutdown, a dead thread or loop — and nobody after.

``concurrency`` counts attempts running at once, of both kinds (`_slots`: a thread takes a
place before it takes a job, so a job not yet started stays on the to-do queue, where
`drain_todo` finds it). A registry without async processors gets ``concurrency`` threads at
start, as ever; with async processors threads are started as plain processors need them
(one more whenever none is left waiting for work), so 200 async attempts run on two threads.

`process` never raises, so a processor cannot end its thread. Should a thread die anyway (a
bug of ours, an interpreter in trouble), the main loop notices (`check`): the job it held
fails through the same `fail` path, and another thread takes its place; the event loop is
watched the same way.

With OpenTelemetry installed, each attempt runs inside its own span, a child of the trace
the job was submitted in (`tracing`).

One module on purpose: the places, the pool and the one-`Finished` rule are a single
contract with the main loop, and the plain and async attempts share their steps (`_begin`,
`_returned`, `_failed`) so the two kinds cannot drift apart.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable

from jobtrail.domain.errors import InvalidResult, JobError, UnknownJobType, WorkerShutdown
from jobtrail.domain.job import Job
from jobtrail.processors.base import BaseProcessor, JobContext, JobView
from jobtrail.processors.engine.event_loop import AsyncAttempts, Stopped
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

DEFAULT_GRACE_SECONDS = 10.0
"""How long an async attempt whose lease was lost may run on before its task is cancelled
(the worker passes its ``grace_seconds``)."""


class ProcessorThreads:
    def __init__(
        self,
        registry: Registry,
        todo: queue.Queue[Running | None],
        done: queue.Queue[Reported],
        concurrency: int,
        progress_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        *,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
    ) -> None:
        self.registry = registry
        self.todo = todo
        self.done = done
        self.concurrency = concurrency
        self.progress_seconds = progress_seconds
        self.grace_seconds = grace_seconds
        self.clock = clock
        """What progress reports are throttled by (tests pass a clock they move)."""
        self._threads: list[threading.Thread] = []
        self._holding: dict[int, Running] = {}
        """The job each thread (by its number) is running (plain processors only)."""
        self._busy = 0
        """Threads running a plain processor now."""
        self._pool_lock = threading.Lock()
        self._slots = threading.Semaphore(concurrency)
        """A place for each attempt running now, of either kind."""
        self._settle_lock = threading.Lock()
        self._loop: AsyncAttempts | None = None
        self._loop_lock = threading.Lock()
        self._stopping = False
        self.tracer = AttemptTracer()
        """One span per attempt when OpenTelemetry is installed (imported once, here)."""

    # ------------------------------------------------------------------ the pool

    def start(self) -> None:
        """``concurrency`` threads for plain processors; one, and more on demand, when the
        registry has async processors (whose attempts take no thread)."""
        size = 1 if self.registry.has_async else self.concurrency
        with self._pool_lock:
            self._threads = [self._spawn(n) for n in range(size)]

    @property
    def thread_count(self) -> int:
        """Threads started for processors (the event loop's not counted)."""
        with self._pool_lock:
            return len(self._threads)

    def check(self) -> None:
        """Notice threads that died: fail the job each held, and start another thread; and
        the same for the event loop (`AsyncAttempts.check`), which also logs a blocked loop."""
        if self._stopping:
            return
        with self._pool_lock:
            threads = list(enumerate(self._threads))
        for n, thread in threads:
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
                with self._pool_lock:
                    self._busy -= 1
                self._ended(lost, THREAD_DIED)
            else:
                log.error("processor thread %s died; starting another", thread.name)
            with self._pool_lock:
                self._threads[n] = self._spawn(n)
        if self._loop is not None:
            self._loop.check()

    def stop(self) -> None:
        """Let each thread end once it has finished its job (a running processor is not
        interrupted: the threads are daemons, so it does not hold the process up). The
        event loop cancels its tasks and closes (`EventLoopThread.stop`)."""
        self._stopping = True
        for _ in range(self.thread_count):
            self.todo.put(None)
        if self._loop is not None:
            self._loop.stop()

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
        Its processor, if running, is told to stop (an async one's task is cancelled), and
        what it reports later is dropped."""
        running.ctx.cancel()
        running.ctx.finish(flush=False)
        self._settle(running, _lost(running, WorkerShutdown()))
        if self._loop is not None:
            self._loop.hand_back(running)

    @property
    def on_the_loop(self) -> list[Running]:
        """The async attempts running now, in no order."""
        return self._loop.running if self._loop is not None else []

    def _spawn(self, n: int) -> threading.Thread:
        thread = threading.Thread(target=self._work, args=(n,), name=f"jobtrail-{n}", daemon=True)
        thread.start()
        return thread

    def _work(self, n: int) -> None:
        while True:
            self._slots.acquire()
            running = self.todo.get()
            if running is None:
                self._slots.release()
                return
            if self.registry.is_async(running.job.job_type):
                self.start_async(running)  # its place is given back when its task is done
                continue
            self._take_a_thread()
            self._holding[n] = running
            self._settle(running, self.process(running))
            del self._holding[n]
            with self._pool_lock:
                self._busy -= 1
            self._slots.release()

    def _take_a_thread(self) -> None:
        """A plain processor takes this thread: start another if none is left to take jobs
        (up to ``concurrency``), so async jobs never wait behind it."""
        with self._pool_lock:
            self._busy += 1
            if (
                self._busy >= len(self._threads)
                and len(self._threads) < self.concurrency
                and not self._stopping
            ):
                self._threads.append(self._spawn(len(self._threads)))

    def _settle(self, running: Running, finished: Finished) -> None:
        """Put the attempt's one `Finished` on the done queue, unless it has one already."""
        with self._settle_lock:
            if running.settled:
                return
            running.settled = True
        self.done.put(finished)

    def _ended(self, running: Running, error: JobError) -> None:
        """An attempt left its thread or the loop: fail it with ``error`` unless it was
        settled, and free its place."""
        running.ctx.finish(flush=False)
        self._settle(running, _lost(running, error))
        self._slots.release()

    # ------------------------------------------------------------------ async attempts

    def event_loop(self) -> AsyncAttempts:
        """The event loop of the async processors, started the first time it is needed."""
        with self._loop_lock:
            if self._loop is None:
                self._loop = AsyncAttempts(
                    self._run_async, self._settle, self._ended, self.grace_seconds
                )
            return self._loop

    def start_async(self, running: Running) -> None:
        """Hand an async attempt to the event loop, without waiting for it: its `Finished`
        is put on the done queue when it ends. It holds a place in ``concurrency``
        (the caller took it) until its task is done."""
        try:
            self.event_loop().start(running)
        except BaseException:  # noqa: BLE001 - a bug of ours: fail the job, not the thread
            log.exception("job %s could not be handed to the event loop", running.job.id)
            self._ended(running, LOST)

    async def _run_async(self, running: Running, stopped: Stopped) -> Finished:
        """Run one async attempt; whatever the processor does becomes a `Finished`."""
        try:
            return await self.tracer.run_async(
                running.job, lambda: self._attempt_async(running, stopped)
            )
        except BaseException:  # noqa: BLE001 - the last line: a failure made in advance
            return _lost(running, LOST)

    async def _attempt_async(self, running: Running, stopped: Stopped) -> Finished:
        job, ctx = running.job, running.ctx
        processor, started = self._begin(job)
        try:
            if processor is None:  # unknown types are failed at claim time; never here
                raise UnknownJobType(f"unknown job type {job.job_type!r}")
            result = await processor.process(ctx.job, ctx)
        except BaseException as error:  # noqa: BLE001 - every exception fails its job (failures)
            raised_at = time.monotonic()
            why = stopped() if isinstance(error, asyncio.CancelledError) else None
            failure = why if why is not None else failure_of(error)
            del error  # the traceback holds the processor's frames
            ctx.finish()
            return self._failed(job, failure, started, raised_at)
        return self._returned(job, ctx, result, started)

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
        """Run one attempt in this thread (an async one on the event loop, waiting for it);
        whatever the processor does becomes a `Finished`. Never raises."""
        try:
            if self.registry.is_async(running.job.job_type):
                return self.event_loop().run_now(running)
            return self.tracer.run(running.job, lambda: self._attempt(running))
        except BaseException:  # noqa: BLE001 - the last line: a failure made in advance
            return _lost(running, LOST)

    def _attempt(self, running: Running) -> Finished:
        job, ctx = running.job, running.ctx
        processor, started = self._begin(job)
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
        return self._returned(job, ctx, result, started)

    def _begin(self, job: Job) -> tuple[BaseProcessor | None, float]:
        log.info(
            "started job %s (%s)",
            job.id,
            job.job_type,
            extra=log_fields(job.id, "attempt_started", job_type=job.job_type, attempt=job.attempt),
        )
        return self.registry.get(job.job_type), time.monotonic()

    def _returned(self, job: Job, ctx: JobContext, result: object, started: float) -> Finished:
        try:
            # Here, in the processor's thread (or loop): a result that cannot be stored
            # fails its job, and never reaches the main loop's write (where NaN stalled a
            # PostgreSQL worker's every turn, and {1: "a", "b": 2} crashed it while hashing).
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
