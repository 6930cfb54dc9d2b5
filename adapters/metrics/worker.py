"""A worker's Prometheus metrics: what it started, completed, failed and retried, and how long
jobs waited, ran and took to fail.

`WorkerMetrics` is the worker's `WorkerObserver`: the worker calls it from its main loop once
each write is committed, so the counters agree with the log. Labels are job types, error
codes and categories, never job ids; a metric holds at most `MAX_LABEL_SETS` label sets
(job types come from whatever was submitted, an unknown type too), and the ones beyond
share ``other``. The children of each label set are kept, so a job costs a dict lookup and
an increment, not `labels()`.
"""

from __future__ import annotations

import logging
from typing import Generic, TypeVar

from jobtrail.domain.errors import JobError
from jobtrail.domain.job import Job
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.metrics import MetricWrapperBase

log = logging.getLogger("jobtrail.metrics")

MAX_LABEL_SETS = 1000
"""Label sets one metric may hold; later ones are counted under ``other``."""
OTHER = "other"

RUN_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
"""Processors run from milliseconds (a lookup) to an hour (a render)."""
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 86_400)
"""A queued job waits from milliseconds (an idle worker) to hours (a backlog)."""
FAILURE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
"""A failure is committed by the worker's next turn: milliseconds, unless the database is
slow or away."""

M = TypeVar("M", bound=MetricWrapperBase)


class Bounded(Generic[M]):
    """A labelled metric's children, at most ``limit`` label sets; beyond it, ``other``."""

    def __init__(self, metric: M, limit: int = MAX_LABEL_SETS) -> None:
        self.metric = metric
        self.limit = limit
        self.children: dict[tuple[str, ...], M] = {}
        self._other: M | None = None

    def __call__(self, *values: str) -> M:
        child = self.children.get(values)
        if child is not None:
            return child
        if len(self.children) < self.limit:
            child = self.children[values] = self.metric.labels(*values)
            return child
        return self._overflow(len(values))

    def _overflow(self, width: int) -> M:
        if self._other is None:
            log.warning(
                "metric %s: more than %d label sets; the others are counted as %r",
                self.metric._name,
                self.limit,
                OTHER,
            )
            self._other = self.metric.labels(*([OTHER] * width))
        return self._other


class WorkerMetrics:
    """The worker's counters and histograms, in a registry of their own (one per process,
    or per test)."""

    def __init__(
        self, registry: CollectorRegistry | None = None, limit: int = MAX_LABEL_SETS
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        by_type = ["job_type"]
        by_error = ["job_type", "error_code", "category"]
        self.started_total = Bounded(
            Counter("jobtrail_jobs_started", "Jobs started (JobStarted)", by_type, registry=r),
            limit,
        )
        self.completed_total = Bounded(
            Counter(
                "jobtrail_jobs_completed", "Jobs completed (JobCompleted)", by_type, registry=r
            ),
            limit,
        )
        self.failed_total = Bounded(
            Counter(
                "jobtrail_jobs_failed",
                "Jobs failed for good (JobFailed), by error code and category",
                by_error,
                registry=r,
            ),
            limit,
        )
        self.retried_total = Bounded(
            Counter(
                "jobtrail_jobs_retried",
                "Retries scheduled after a failure (JobRetryScheduled)",
                by_error,
                registry=r,
            ),
            limit,
        )
        self.run_seconds = Bounded(
            Histogram(
                "jobtrail_job_run_seconds",
                "How long a processor ran, started to outcome (completed, failed or retried)",
                by_type,
                buckets=RUN_BUCKETS,
                registry=r,
            ),
            limit,
        )
        self.queue_wait_seconds = Bounded(
            Histogram(
                "jobtrail_job_queue_wait_seconds",
                "How long a job waited to start, from available_at to JobStarted",
                by_type,
                buckets=WAIT_BUCKETS,
                registry=r,
            ),
            limit,
        )
        self.failure_latency_seconds = Bounded(
            Histogram(
                "jobtrail_job_failure_latency_seconds",
                "From a processor raising to its failure (or retry) being committed",
                by_type,
                buckets=FAILURE_BUCKETS,
                registry=r,
            ),
            limit,
        )

    # ------------------------------------------------------------------ WorkerObserver

    def started(self, job: Job) -> None:
        job_type = job.job_type
        self.started_total(job_type).inc()
        if job.started_at is not None and job.available_at is not None:
            waited = (job.started_at - job.available_at).total_seconds()
            self.queue_wait_seconds(job_type).observe(max(waited, 0.0))

    def refused(self, job: Job) -> None:
        code, category = job.error_code or "", job.error_category or ""
        self.failed_total(job.job_type, code, category).inc()

    def completed(self, job_type: str, run_seconds: float) -> None:
        self.completed_total(job_type).inc()
        self.run_seconds(job_type).observe(run_seconds)

    def failed(
        self,
        job_type: str,
        error: JobError,
        *,
        retried: bool,
        run_seconds: float,
        committed_after: float,
    ) -> None:
        counter = self.retried_total if retried else self.failed_total
        counter(job_type, error.code, error.category.value).inc()
        self.run_seconds(job_type).observe(run_seconds)
        self.failure_latency_seconds(job_type).observe(committed_after)
