"""What a worker tells an observer (metrics) about the jobs it records.

The worker calls an observer from its main loop only, once the write it reports is
committed, so an observer sees exactly what the log holds and needs no lock of its own. The
calls are on the hot path: an observer must be cheap and must not raise (the worker does
not guard against it). `NO_OBSERVER`, the default, does nothing.
"""

from __future__ import annotations

from typing import Protocol

from jobtrail.domain.errors import JobError
from jobtrail.domain.job import Job


class WorkerObserver(Protocol):
    def started(self, job: Job) -> None:
        """A claimed job was started (its `JobStarted` is committed); ``job.started_at`` and
        ``job.available_at`` give how long it waited in the queue."""

    def refused(self, job: Job) -> None:
        """A claimed job was failed from ``queued`` without running (no processor handles
        its type): its ``error_code`` and ``error_category`` say why."""

    def completed(self, job_type: str, run_seconds: float) -> None:
        """A processor's result was committed (`JobCompleted`); it ran ``run_seconds``."""

    def failed(
        self,
        job_type: str,
        error: JobError,
        *,
        retried: bool,
        run_seconds: float,
        committed_after: float,
    ) -> None:
        """A processor's failure was committed: `JobRetryScheduled` when ``retried``, else
        `JobFailed`. ``committed_after``: seconds from the processor raising to the commit."""


class NoObserver:
    """The default: a worker without metrics pays one method call per job and event."""

    def started(self, job: Job) -> None:
        pass

    def refused(self, job: Job) -> None:
        pass

    def completed(self, job_type: str, run_seconds: float) -> None:
        pass

    def failed(
        self,
        job_type: str,
        error: JobError,
        *,
        retried: bool,
        run_seconds: float,
        committed_after: float,
    ) -> None:
        pass


NO_OBSERVER: WorkerObserver = NoObserver()
