"""The worker runtime: claim, run, heartbeat, reap, and one path for every outcome.

A worker claims available jobs in batches (one transaction each), runs their processors
on a pool of daemon threads, and hands every outcome back to its main loop: a result
becomes `complete`, any exception becomes `fail`, whose retry policy chooses between
`JobRetryScheduled` and `JobFailed`. Finished jobs are written in one transaction per
loop turn. A job of a type no processor handles goes through the same `fail`, from
``queued``. The main loop also renews leases (heartbeats write no events) and runs the
reaper, which fails jobs whose lease expired.

This module is the main loop; its parts are listed in `jobtrail.processors.engine`. When
the database fails, the loop backs off and tries again, or stops the worker when waiting
cannot help (`patience`): `Worker.run` then raises the error, which the CLI prints as one
line, exit status 1.
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import socket
import threading
import time
import uuid
from datetime import timedelta

from jobtrail.domain.errors import ConcurrencyConflict, StorageError
from jobtrail.domain.job import Meta
from jobtrail.domain.ports import Clock, JobQueue, Lease, SystemClock
from jobtrail.domain.services import JobService
from jobtrail.processors.engine.claims import Claims
from jobtrail.processors.engine.failures import log_fields
from jobtrail.processors.engine.observer import NO_OBSERVER, WorkerObserver
from jobtrail.processors.engine.outcomes import Finished, Reported, Running
from jobtrail.processors.engine.patience import BACKOFF_MIN, DatabaseRefusesWrites, Patience
from jobtrail.processors.engine.reaper import Reaper
from jobtrail.processors.engine.runner import ProcessorThreads
from jobtrail.processors.engine.settings import (
    InvalidWorkerSettings,
    WorkerSettings,
    WorkerStats,
    check_worker_id,
)
from jobtrail.processors.engine.wakeup import DoneQueue, StopFlag, WakeSource, idle_timeout
from jobtrail.processors.engine.writer import OutcomeWriter, rejects_data
from jobtrail.processors.registry import Registry

__all__ = [
    "DatabaseRefusesWrites",
    "InvalidWorkerSettings",
    "Worker",
    "WorkerSettings",
    "WorkerStats",
]

log = logging.getLogger("jobtrail.worker")

UNTIL_EMPTY_HORIZON = timedelta(seconds=60)
"""With --until-empty, queued jobs due later than this (delayed jobs) are not waited for."""


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
        observer: WorkerObserver = NO_OBSERVER,
        wakeup: WakeSource | None = None,
    ) -> None:
        """``wakeup``: push wakeups for an idle worker (PostgreSQL's LISTEN, given by
        `Jobtrail.worker`); without them an idle worker polls (docs/wakeup.md)."""
        self.service = service
        self.queue = queue_
        self.registry = registry
        self.settings = settings = settings or WorkerSettings()
        self.worker_id = (
            check_worker_id(worker_id)
            if worker_id is not None
            else f"{socket.gethostname()[:100]}:{uuid.uuid4().hex[:8]}"
        )
        self.clock = clock or SystemClock()
        self.meta = Meta(actor=self.worker_id)
        self.stats = WorkerStats()
        self.reaper = Reaper(service, queue_, self.clock, actor=f"reaper@{self.worker_id}")
        self._running: dict[str, Running] = {}
        self._todo: queue.Queue[Running | None] = queue.Queue()
        self._done: DoneQueue[Reported] = DoneQueue()
        self._stop: threading.Event = StopFlag(self._done.wake)
        if settings.push_only and wakeup is None:
            reason = "needs push wakeups (PostgreSQL): without them nothing would wake the worker"
            raise InvalidWorkerSettings(name="push_only", reason=reason)
        self._wakeup = wakeup
        self._idle_poll = settings.idle_poll(pushed=wakeup is not None)
        self._threads = ProcessorThreads(
            registry,
            self._todo,
            self._done,
            settings.concurrency,
            settings.progress_seconds,
            grace_seconds=settings.grace_seconds,
        )
        self._writer = OutcomeWriter(
            service, self._running, self.stats, self.clock, self.meta, observer
        )
        self._claims = Claims(
            registry,
            service,
            settings,
            self.clock,
            self.worker_id,
            self.meta,
            self._running,
            self._threads,
            self.stats,
            observer,
        )
        self._patience = Patience(settings.give_up_seconds)
        self._claim_next = False
        """The last turn wrote a failure without claiming: claim without waiting."""

    # ------------------------------------------------------------------ control

    def stop(self) -> None:
        """Stop claiming; running jobs get the grace period, then are handed back."""
        self._stop.set()

    def run(self) -> WorkerStats:
        with self.queue.holding():
            return self._run()

    def _run(self) -> WorkerStats:
        self._threads.start()
        log.info(
            "worker %s started (concurrency %d), running %s",
            self.worker_id,
            self.settings.concurrency,
            ", ".join(self.registry.job_types) or "no job types",
        )
        next_heartbeat = next_reap = time.monotonic()
        wakeups = contextlib.ExitStack()
        try:
            if self._wakeup is not None:  # before the first claim: a job queued after it wakes
                wakeups.enter_context(self._wakeup(self._done.wake))
            while not self._stop.is_set():
                try:
                    self._threads.check()
                    claimed = self._exchange()
                    now = time.monotonic()
                    if now >= next_heartbeat:
                        self._heartbeat()
                        next_heartbeat = now + self.settings.renew_every
                    if now >= next_reap:
                        self.stats.reaped += self.reaper.reap_once()
                        next_reap = now + self.settings.reap_seconds
                    if self._finished_its_work(claimed):
                        break
                except (StorageError, ConcurrencyConflict) as error:
                    wait = self._patience.failed(error)  # raises when waiting cannot help
                    log.warning("%s Trying again in %.1f s.", error, wait)
                    self._stop.wait(wait)
                    continue
                self._patience.turn_done()
                self._wait_for_results(reap_at=next_reap)
        finally:
            wakeups.close()
            self._shut_down()
        log.info("worker %s stopped: %s", self.worker_id, self.stats)
        return self.stats

    # ------------------------------------------------------------------ a turn

    def _exchange(self, claiming: bool = True) -> int:
        """Write every outcome reported so far and claim what fits, in one transaction.

        Outcomes are applied to the jobs the worker holds in memory (it is the only writer
        of a job it holds, barring a cancel or the reaper); if one of them was changed by
        someone else the transaction fails on the version check, nothing is written, and
        the outcomes are written again one by one against the jobs' fresh state.
        """
        writer = self._writer
        items = self._drain_done()
        steps, finished = writer.collect(items)
        # A failure is what someone waits for: its turn writes outcomes only (no claim
        # query, no jobs to start, fewer round trips); the next turn claims, at once and
        # whatever it carries, so a stream of failures cannot starve the claims.
        failing = any(item.error is not None for item in finished.values())
        defer_claim = claiming and failing and not self._claim_next
        self._claim_next = defer_claim
        room = (
            self._claims.room(len(finished), writer.typical_run)
            if claiming and not defer_claim
            else 0
        )
        if not steps and room <= 0:
            return 0
        stuck: StorageError | None = None
        try:
            results, appends = writer.apply_in_memory(steps, finished)
            try:
                claimed = self.queue.claim(
                    room,
                    self.settings.job_types,
                    self._claims.start_or_refuse,
                    appends,
                    queues=self.settings.queues,
                )
            except ConcurrencyConflict:
                log.info(
                    "outcomes of %d job(s) conflicted with another writer; writing them one by one",
                    len(steps),
                )
                results, claimed = writer.write_one_by_one(steps, finished), []
        except StorageError as error:
            # Nothing was written: keep the outcomes for the next turn, and reload the
            # jobs they were applied to in memory before applying them again.
            writer.stale.update(steps)
            if not steps or not rejects_data(error):
                writer.carry = items
                raise
            log.warning(
                "writing the outcomes of %d job(s) failed (%s); writing each job's alone",
                len(steps),
                error,
            )
            results, refused_all = writer.write_each_alone(steps, finished, items)
            stuck = error if refused_all else None
            claimed = []
        else:
            for append in appends:
                writer.clear_pending(append.events[0].job_id)
        if stuck is None:
            self._patience.accepted()
        committed = time.monotonic()
        for job_id, item in finished.items():
            if job_id not in results:
                continue  # carried to the next turn
            running = self._running.pop(job_id, None)
            writer.stale.discard(job_id)
            writer.report(item, results[job_id], committed, running)
        self._claims.take(claimed, self._todo)
        if stuck is not None:
            raise stuck
        return len(claimed)

    def _drain_done(self) -> list[Reported]:
        items, self._writer.carry = self._writer.carry, []
        while True:
            try:
                items.append(self._done.get_nowait())
            except queue.Empty:
                return items

    def _wait_for_results(self, reap_at: float = math.inf) -> None:
        """Until a result, a wakeup or a stop comes, or the turn's time is up.

        With jobs running, that time is the busy poll. An idle worker waits for its idle
        poll or its next reap; with push wakeups, also for the due time of the next delayed
        job it could claim, read now (`idle_timeout`)."""
        if self._claim_next:
            return
        if self._running:
            timeout = self.settings.busy_poll
        else:
            due = None
            if self._wakeup is not None:
                try:
                    due = self.queue.next_available_at(
                        self.settings.job_types, self.settings.queues
                    )
                except StorageError as error:  # the next turn meets it and backs off
                    log.debug("reading the next due time failed: %s", error)
                    reap_at = min(reap_at, time.monotonic() + self.settings.busy_poll)
            reap_in = reap_at - time.monotonic()
            timeout = idle_timeout(self._idle_poll, reap_in, due, self.clock.now())
        item = self._done.get_or_wake(timeout)
        if item is not None:
            self._writer.carry.append(item)  # first in line: outcomes of a job keep their order

    def _process(self, running: Running) -> Finished:
        """Run one job's processor in this thread (tests drive threads' steps this way)."""
        return self._threads.process(running)

    # ------------------------------------------------------------------ leases

    def _heartbeat(self) -> None:
        if not self._running:
            return
        leases = [Lease(job_id, r.job.attempt) for job_id, r in self._running.items()]
        until = self.clock.now() + timedelta(seconds=self.settings.lease_seconds)
        held = self.queue.renew(self.worker_id, leases, until)
        self._patience.accepted()
        for lease in leases:
            if lease.job_id not in held:
                running = self._running[lease.job_id]
                if not running.ctx.cancelled:
                    log.warning(
                        "job %s: lease lost (cancelled or taken over)",
                        lease.job_id,
                        extra=log_fields(
                            lease.job_id,
                            "lease_lost",
                            job_type=running.job.job_type,
                            attempt=lease.attempt,
                        ),
                    )
                    running.ctx.cancel()

    # ------------------------------------------------------------------ stopping

    def _finished_its_work(self, claimed: int) -> bool:
        if self._running or claimed:
            return False
        if self.settings.max_jobs is not None and self.stats.claimed >= self.settings.max_jobs:
            return True
        return self.settings.until_empty and not self._work_due_soon()

    def _work_due_soon(self) -> bool:
        due = self.queue.next_available_at(self.settings.job_types, self.settings.queues)
        return due is not None and due <= self.clock.now() + UNTIL_EMPTY_HORIZON

    def _shut_down(self) -> None:
        """Let running jobs finish within the grace period, then hand the rest back.

        After a permanent database error nothing can be written: the jobs are left to
        their leases, which end, and the reaper retries them."""
        for unstarted in self._drain_todo():
            self._threads.hand_back(unstarted)
        if self._patience.fatal:
            for running in self._running.values():
                running.ctx.cancel()
            if self._running:
                log.error(
                    "%d job(s) left processing: their leases will expire and the reaper will "
                    "retry them",
                    len(self._running),
                )
            self._threads.stop()
            return
        deadline = time.monotonic() + self.settings.grace_seconds
        next_heartbeat = time.monotonic() + self.settings.renew_every
        while self._running and time.monotonic() < deadline:
            try:
                self._threads.check()
                if time.monotonic() >= next_heartbeat:
                    self._heartbeat()
                    next_heartbeat = time.monotonic() + self.settings.renew_every
                self._wait_for_results()
                self._exchange(claiming=False)
            except (StorageError, ConcurrencyConflict) as error:
                log.warning("%s Trying again.", error)
                time.sleep(BACKOFF_MIN)
        for running in list(self._running.values()):
            self._threads.hand_back(running)
        try:
            self._exchange(claiming=False)
        except (StorageError, ConcurrencyConflict) as error:
            log.error(
                "could not hand back %d job(s) (%s); their leases will expire and the "
                "reaper will retry them",
                len(self._running),
                error,
            )
        self._threads.stop()

    def _drain_todo(self) -> list[Running]:
        return self._threads.drain_todo()
