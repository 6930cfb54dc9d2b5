"""The reaper: a job whose lease expired goes through the same `fail` as any failure.

Its worker died or hung. `LeaseExpired` is retryable, so the job is retried while it has
attempts left. If the worker finishes the job at the same moment, exactly one terminal
event wins: the loser finds the job finished (or its attempt over) and records nothing.
"""

from __future__ import annotations

import logging

from jobtrail.domain.errors import CommandRejected, JobNotFound, LeaseExpired
from jobtrail.domain.job import Meta, Outcome
from jobtrail.domain.ports import Clock, JobQueue
from jobtrail.domain.services import JobService

log = logging.getLogger("jobtrail.reaper")


class Reaper:
    def __init__(
        self, service: JobService, queue: JobQueue, clock: Clock, actor: str = "reaper"
    ) -> None:
        self.service = service
        self.queue = queue
        self.clock = clock
        self.meta = Meta(actor=actor)

    def reap_once(self, limit: int = 100) -> int:
        """Fail every job whose lease has expired; returns how many were failed."""
        reaped = 0
        for lease in self.queue.expired(self.clock.now(), limit):
            try:
                outcome = self.service.fail(lease.job_id, LeaseExpired(), lease.attempt, self.meta)
            except (CommandRejected, JobNotFound) as error:
                log.info("job %s: lease expiry absorbed: %s", lease.job_id, error)
                continue
            if outcome is Outcome.RECORDED:
                reaped += 1
                log.warning(
                    "job %s: lease of attempt %d expired; failed it", lease.job_id, lease.attempt
                )
        return reaped
