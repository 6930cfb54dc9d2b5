"""What a processor is, and what it sees while it runs."""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

ProgressReport = Callable[[int, str | None], None]


@dataclass(frozen=True)
class JobView:
    """The job as a processor sees it: read-only."""

    id: str
    job_type: str
    payload: Mapping[str, Any]
    attempt: int
    max_attempts: int


class JobContext:
    """Progress reports, cooperative cancellation and a logger for one running attempt.

    Progress is throttled: at most one report per ``min_interval`` seconds reaches the
    log (and none that repeats the last percentage), so a chatty processor does not grow
    the log with every call.
    """

    def __init__(
        self,
        job: JobView,
        report: ProgressReport,
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job = job
        self.logger = logging.LoggerAdapter(
            logging.getLogger("jobtrail.processor"), {"job_id": job.id}
        )
        self._report = report
        self._min_interval = min_interval
        self._clock = clock
        self._last_report = float("-inf")
        self._last_percent: int | None = None
        self._cancelled = threading.Event()

    def progress(self, percent: int, message: str | None = None) -> bool:
        """Report progress (0–100); returns whether this report was recorded."""
        now = self._clock()
        if percent == self._last_percent or now - self._last_report < self._min_interval:
            return False
        self._last_report, self._last_percent = now, percent
        self._report(max(0, min(100, int(percent))), message)
        return True

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled or its lease lost: stop and return."""
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Called by the worker runtime; processors only read `cancelled`."""
        self._cancelled.set()


class BaseProcessor(abc.ABC):
    """Runs jobs of one type. Return a JSON-compatible result, or raise.

    Raise one of jobtrail's typed errors (a `UserError` such as `InvalidInput`, which the
    requester must fix; a `TransientError` such as `UpstreamTimeout`, retried with backoff);
    any other exception is treated as an unexpected system error. A plain function can be a
    processor too: see `Registry.processor`.
    """

    job_type: str
    """The job type this processor runs; a class attribute of each subclass."""

    @abc.abstractmethod
    def process(self, job: JobView, ctx: JobContext) -> Any:
        """Do the work of one attempt."""
