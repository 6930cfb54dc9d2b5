"""The claim side of a turn: how many jobs fit, how each claimed job is started (or failed,
from ``queued``, when no processor handles its type), and handing the started ones to the
processor threads in the order they were claimed: priority first, then ``available_at``,
then id (the claim query's order, which `JobQueue.claim` keeps)."""

from __future__ import annotations

import logging
import queue
import time

from jobtrail.domain.errors import UnknownJobType
from jobtrail.domain.job import Job, Meta, Outcome
from jobtrail.domain.ports import Clock
from jobtrail.domain.services import JobService
from jobtrail.processors.engine.failures import log_fields
from jobtrail.processors.engine.observer import NO_OBSERVER, WorkerObserver
from jobtrail.processors.engine.outcomes import Running
from jobtrail.processors.engine.runner import ProcessorThreads
from jobtrail.processors.engine.settings import WorkerSettings, WorkerStats
from jobtrail.processors.registry import Registry

log = logging.getLogger("jobtrail.worker")

SHORT_JOB_SECONDS, SHORT_JOB_PREFETCH_FACTOR = 0.05, 4
"""Jobs that typically run under 50 ms are claimed four times as many at a time: holding
them costs little, and it spreads each commit over more jobs."""


class Claims:
    def __init__(
        self,
        registry: Registry,
        service: JobService,
        settings: WorkerSettings,
        clock: Clock,
        worker_id: str,
        meta: Meta,
        held: dict[str, Running],
        threads: ProcessorThreads,
        stats: WorkerStats,
        observer: WorkerObserver = NO_OBSERVER,
    ) -> None:
        self.registry = registry
        self.service = service
        self.settings = settings
        self.clock = clock
        self.worker_id = worker_id
        self.meta = meta
        self.held = held
        self.threads = threads
        self.stats = stats
        self.observer = observer

    def room(self, finishing: int, typical_run: float | None) -> int:
        """How many jobs to claim, with ``finishing`` of the held ones about to be written."""
        per_thread = self.settings.prefetch
        if typical_run is not None and typical_run < SHORT_JOB_SECONDS:
            per_thread *= SHORT_JOB_PREFETCH_FACTOR  # short jobs: bigger turns, few commits
        room = self.settings.concurrency * per_thread - len(self.held) + finishing
        if self.settings.max_jobs is not None:
            room = min(room, self.settings.max_jobs - self.stats.claimed)
        return room

    def start_or_refuse(self, job: Job) -> Outcome:
        """The claim command: start a job we can run, fail one no processor handles."""
        if self.registry.get(job.job_type) is None:
            error = UnknownJobType(f"unknown job type {job.job_type!r}")
            log.warning(
                "job %s has unknown type %r",
                job.id,
                job.job_type,
                extra=log_fields(job.id, "unknown_type", job_type=job.job_type, error=error),
            )
            return job.fail(
                error, None, now=self.clock.now(), policy=self.service.policy, meta=self.meta
            )
        return job.start(
            self.worker_id, self.settings.lease_seconds, now=self.clock.now(), meta=self.meta
        )

    def take(self, claimed: list[Job], todo: queue.Queue[Running | None]) -> None:
        """Hand the started jobs to the threads, in the order claimed."""
        for job in claimed:
            job.pending.clear()
            if job.status == "processing":
                running = Running(job, self.threads.context_for(job), time.monotonic())
                self.held[job.id] = running
                todo.put(running)
                self.observer.started(job)
            else:
                log.info(
                    "job %s marked failed: %s",
                    job.id,
                    job.error_message,
                    extra=log_fields(
                        job.id,
                        "JobFailed",
                        job_type=job.job_type,
                        error_code=job.error_code,
                        error_category=job.error_category,
                        error_message=job.error_message,
                    ),
                )
                self.stats.failed += 1
                self.observer.refused(job)
        self.stats.claimed += len(claimed)
