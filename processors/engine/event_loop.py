"""The event loop that runs async processors: one asyncio loop on one daemon thread.

An attempt of an ``async def`` processor is a task on this loop, not a thread of its own,
so a worker running 200 of them at once needs two threads (the loop's and one that hands
jobs to it), not 200. The runner (`runner.ProcessorThreads`) decides which attempts come
here and counts them against ``concurrency``; this module runs them with the thread path's
promises:

- **One `Finished` per attempt.** The attempt's coroutine puts it (`settle`); a task that
  ends without having done so (cancelled before it began, a bug of ours) is failed by
  `ended`; whoever ends an attempt first wins (`Running.settled`), so a hand-back, a dead
  loop and the coroutine itself never report the same attempt twice. `ended` also gives the
  attempt's place in ``concurrency`` back, once, when its task is done.
- **Cancellation.** A lost lease (`JobContext.cancel`) sets ``ctx.cancelled`` at once, as
  for a thread; if the task still runs ``grace_seconds`` later it is cancelled
  (`Task.cancel`) and its `CancelledError` is recorded as `LeaseExpired`. A hand-back at
  shutdown (the worker's grace period is over by then) cancels the task at once; the
  attempt was already failed with `WorkerShutdown`.
- **What a task raises stays in the task.** asyncio re-raises a task's `SystemExit` and
  `KeyboardInterrupt` out of the loop: the attempt's own are caught in its coroutine (the
  runner), a stray task's are logged and the loop runs on, as it does when a processor calls
  ``loop.stop()``. Should the loop's thread die anyway, `check` fails the attempts it held
  (``the worker thread running the processor died``) and starts another loop.
- **Blocking the loop is the processor's bug, not a deadlock.** A processor that calls
  ``time.sleep`` (or computes, or uses a blocking client) stalls every async attempt of the
  worker; the worker's main loop goes on renewing leases and logs it (`check`), naming the
  job. Nothing here waits for the loop from another thread except `run_now`, which runs one
  attempt to its end for the tests that drive a worker by hand.

One module on purpose: the loop's thread and the attempts on it share one lifecycle (a
loop that dies fails exactly the attempts it held; a stopping loop cancels them).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from jobtrail.domain.errors import JobError, LeaseExpired, WorkerShutdown
from jobtrail.processors.engine.failures import (
    LOST,
    THREAD_DIED,
    log_fields,
    safe_text,
    type_name_of,
)
from jobtrail.processors.engine.outcomes import Finished, Running

log = logging.getLogger("jobtrail.worker")

TICK_SECONDS = 0.1
"""How often the loop notes that it runs (what `check` measures a blocked loop by)."""
BLOCKED_SECONDS = 1.0
"""A loop that has not run for this long is blocked by a processor: logged."""
STOP_SECONDS = 2.0
"""At stop, how long cancelled tasks get to clean up before the loop stops."""

Stopped = Callable[[], JobError | None]
"""Why the worker cancelled an attempt's task, None if it did not: what the attempt's
`CancelledError` is recorded as."""
Attempt = Callable[[Running, Stopped], Coroutine[Any, Any, Finished]]
"""The runner's async attempt: never raises, returns the attempt's `Finished`."""


class EventLoopThread:
    """An asyncio event loop on a daemon thread, that runs on whatever its tasks raise."""

    def __init__(self, name: str = "jobtrail-asyncio") -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(_unhandled)
        self.last_tick = time.monotonic()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def call(self, callback: Callable[..., object], *args: Any) -> bool:
        """``callback(*args)`` on the loop, soon; False if the loop is closed. Never waits."""
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed
            return False
        return True

    def blocked_for(self) -> float:
        """Seconds since the loop last ran its tick: about 0 when it runs freely."""
        return time.monotonic() - self.last_tick

    def running_task(self) -> asyncio.Task[Any] | None:
        """The task the loop is running now (read from another thread: a hint for a log)."""
        try:
            return asyncio.current_task(self.loop)
        except Exception:  # noqa: BLE001 - only a log line depends on it
            return None

    def stop(self) -> None:
        """Cancel every task, let them clean up (`STOP_SECONDS` at most), close the loop.
        Does not wait: a loop that a processor blocks ends with the process."""
        self._stopping = True
        self.call(self._schedule_stop)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self._tick()
        while not self._stopping:
            try:
                self.loop.run_forever()
            except BaseException as error:  # noqa: BLE001 - a stray task's SystemExit & co
                self._survive(error)
            else:
                if not self._stopping:
                    log.warning("a processor stopped the event loop (loop.stop()); it runs on")
        self._close()

    def _survive(self, error: BaseException) -> None:
        log.error(
            "a task of an async processor raised %s out of the event loop; the loop runs on",
            type_name_of(error),
        )

    def _tick(self) -> None:
        self.last_tick = time.monotonic()
        self.loop.call_later(TICK_SECONDS, self._tick)

    def _schedule_stop(self) -> None:
        self.loop.create_task(self._stop_tasks(), name="jobtrail stop")

    async def _stop_tasks(self) -> None:
        me = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks(self.loop) if task is not me]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_SECONDS)
        self.loop.stop()

    def _close(self) -> None:
        try:
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        except BaseException:  # noqa: BLE001 - closing anyway
            log.debug("the event loop's async generators did not close", exc_info=True)
        finally:
            self.loop.close()


def _unhandled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """An error no task retrieved (a processor's stray task): one log line, no traceback."""
    error = context.get("exception")
    said = f": {type_name_of(error)}: {safe_text(error, 500)}" if error is not None else ""
    log.warning("event loop of the async processors: %s%s", context.get("message"), said)


@dataclass(eq=False)
class _OnLoop:
    """An attempt handed to the loop, until its task is done."""

    running: Running
    task: asyncio.Task[None] | None = None
    stopped: JobError | None = None
    """Why the worker cancelled the task (set before `Task.cancel`)."""
    timer: asyncio.TimerHandle | None = None
    """The `Task.cancel` due ``grace_seconds`` after the lease was lost."""


class AsyncAttempts:
    """Runs attempts of async processors as tasks on one event loop (see the module)."""

    def __init__(
        self,
        attempt: Attempt,
        settle: Callable[[Running, Finished], None],
        ended: Callable[[Running, JobError], None],
        grace_seconds: float,
    ) -> None:
        self._attempt = attempt
        self._settle = settle
        self._ended = ended
        """Called once per attempt when it leaves the loop: fails it with the error given
        unless it was settled, and frees its place in ``concurrency``."""
        self._grace = grace_seconds
        self._lock = threading.Lock()
        self._on_loop: dict[int, _OnLoop] = {}
        """By ``id(running)``: a job may run twice here, a lost attempt beside a new one."""
        self._stopped = False
        self._warned_blocked = False
        self._thread = EventLoopThread()
        self._thread.start()

    @property
    def running(self) -> list[Running]:
        """The attempts on the loop, in no order."""
        with self._lock:
            return [entry.running for entry in self._on_loop.values()]

    def start(self, running: Running) -> None:
        """Run an attempt on the loop; called by the thread that hands it over. Never waits."""
        entry = _OnLoop(running)
        with self._lock:
            self._on_loop[id(running)] = entry
            thread = self._thread
        if not thread.call(self._begin, entry):
            self._end(entry, WorkerShutdown())  # the loop was closed: the worker stops

    def run_now(self, running: Running) -> Finished:
        """Run one attempt on the loop and wait for its `Finished` (tests drive workers by
        hand with it; it waits as long as the processor runs)."""
        with self._lock:
            loop = self._thread.loop
        coroutine = self._attempt(running, lambda: None)
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result()

    def hand_back(self, running: Running) -> None:
        """The worker gave the attempt up (already failed): cancel its task now."""
        with self._lock:
            entry = self._on_loop.get(id(running))
        if entry is not None:
            self._call(self._cancel, entry, WorkerShutdown())

    def check(self) -> None:
        """From the main loop, each turn: replace a dead loop, log a blocked one."""
        with self._lock:
            thread = self._thread
        if self._stopped:
            return
        if not thread.alive:
            self._replace_dead_loop()
            return
        self._watch(thread)

    def stop(self) -> None:
        self._stopped = True
        with self._lock:
            entries, thread = list(self._on_loop.values()), self._thread
        for entry in entries:
            thread.call(self._cancel, entry, WorkerShutdown())
        thread.stop()

    # ------------------------------------------------------------------ on the loop

    def _begin(self, entry: _OnLoop) -> None:
        running = entry.running
        if running.settled:  # handed back before it began
            self._end(entry, WorkerShutdown())
            return
        job = running.job
        task = asyncio.get_running_loop().create_task(
            self._run(entry), name=f"job {job.id} attempt {job.attempt}"
        )
        entry.task = task
        task.add_done_callback(lambda _: self._done(entry))
        running.ctx.when_cancelled(lambda: self._call(self._cancel_later, entry))

    async def _run(self, entry: _OnLoop) -> None:
        finished = await self._attempt(entry.running, lambda: entry.stopped)
        self._settle(entry.running, finished)

    def _done(self, entry: _OnLoop) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
        self._end(entry, entry.stopped or LOST)

    def _cancel_later(self, entry: _OnLoop) -> None:
        """The lease was lost: the task has ``grace_seconds`` to notice ``ctx.cancelled``."""
        if entry.task is None or entry.task.done() or entry.timer is not None:
            return
        error = LeaseExpired(
            "the lease was lost (the job was cancelled or taken over); the attempt was "
            "cancelled after the grace period"
        )
        entry.timer = asyncio.get_running_loop().call_later(self._grace, self._cancel, entry, error)

    def _cancel(self, entry: _OnLoop, why: JobError) -> None:
        task = entry.task
        if task is None or task.done():
            return
        if entry.stopped is None:
            entry.stopped = why
        task.cancel()

    # ------------------------------------------------------------------ bookkeeping

    def _end(self, entry: _OnLoop, error: JobError) -> None:
        with self._lock:
            if self._on_loop.pop(id(entry.running), None) is None:
                return  # ended already (its loop died)
        self._ended(entry.running, error)

    def _call(self, callback: Callable[..., object], *args: Any) -> None:
        with self._lock:
            thread = self._thread
        thread.call(callback, *args)

    def _replace_dead_loop(self) -> None:
        with self._lock:
            lost = list(self._on_loop.values())
            self._on_loop.clear()
            self._thread = EventLoopThread()
            self._thread.start()
        log.error(
            "the event loop running async processors died; failing its %d job(s), starting another",
            len(lost),
        )
        for entry in lost:
            job = entry.running.job
            log.error(
                "the event loop running job %s died; failing the job",
                job.id,
                extra=log_fields(job.id, "thread_died", job_type=job.job_type, attempt=job.attempt),
            )
            self._ended(entry.running, THREAD_DIED)

    def _watch(self, thread: EventLoopThread) -> None:
        blocked = thread.blocked_for()
        if blocked < BLOCKED_SECONDS:
            if self._warned_blocked:
                self._warned_blocked = False
                log.info("the event loop of the async processors runs again")
            return
        if self._warned_blocked:
            return
        self._warned_blocked = True
        blocker = self._blocker(thread.running_task())
        job_fields = {}
        if blocker is not None:
            job = blocker.job
            job_fields = log_fields(
                job.id, "event_loop_blocked", job_type=job.job_type, attempt=job.attempt
            )
        log.warning(
            "the event loop of the async processors has not run for %.1f s: %s blocks it, "
            "and every async job of this worker waits (an async processor must not call "
            "blocking code such as time.sleep: await asyncio.sleep, or asyncio.to_thread)",
            blocked,
            f"job {blocker.job.id}" if blocker is not None else "a task or callback",
            extra=job_fields,
        )

    def _blocker(self, task: asyncio.Task[Any] | None) -> Running | None:
        if task is None:
            return None
        with self._lock:
            for entry in self._on_loop.values():
                if entry.task is task:
                    return entry.running
        return None
