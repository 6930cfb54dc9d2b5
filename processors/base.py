"""What a processor is, and what it sees while it runs."""

from __future__ import annotations

import abc
import logging
import math
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
    the log with every call. The last report the throttle held back is not lost: when the
    attempt ends the worker sends it (`finish`), before the result or the failure, unless
    a later report already said the same. A percentage that is not a finite number (NaN,
    infinity, None, "half") is ignored with a log line, never raised into the processor;
    others are clamped to 0–100 and rounded down.
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
        self._held_back: tuple[int, str | None] | None = None
        self._finished = False
        self._ignored = 0
        self._lock = threading.Lock()
        self._cancelled = threading.Event()
        self._on_cancel: list[Callable[[], None]] | None = None

    def progress(self, percent: float, message: str | None = None) -> bool:
        """Report progress (0–100); returns whether this report was recorded."""
        clamped = _percent(percent)
        if clamped is None:
            self._ignore(percent)
            return False
        with self._lock:
            if self._finished:
                return False
            if clamped == self._last_percent:
                self._held_back = None  # the log already says this
                return False
            now = self._clock()
            if now - self._last_report < self._min_interval:
                self._held_back = (clamped, message)
                return False
            self._last_report, self._last_percent, self._held_back = now, clamped, None
            self._report(clamped, message)
            return True

    def finish(self, *, flush: bool = True) -> None:
        """Called by the worker runtime when the attempt ends: sends the report the
        throttle held back last (unless ``flush`` is false), and ignores any later one."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            held, self._held_back = self._held_back, None
            if flush and held is not None:
                self._last_percent = held[0]
                self._report(*held)

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled or its lease lost: stop and return."""
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Called by the worker runtime; processors only read `cancelled`."""
        with self._lock:
            if self._cancelled.is_set():
                return
            self._cancelled.set()
            callbacks, self._on_cancel = self._on_cancel, None
        for callback in callbacks or ():
            _call_quietly(callback)

    def when_cancelled(self, callback: Callable[[], None]) -> None:
        """Called by the worker runtime: ``callback()`` once `cancel` is called (at once if
        it was), in the thread that cancels; how an async attempt learns of a lost lease."""
        with self._lock:
            if not self._cancelled.is_set():
                self._on_cancel = [*(self._on_cancel or ()), callback]
                return
        _call_quietly(callback)

    def _ignore(self, percent: object) -> None:
        self._ignored += 1
        level = logging.WARNING if self._ignored == 1 else logging.DEBUG
        self.logger.log(
            level,
            "job %s: progress %s ignored: a percentage must be a finite number",
            self.job.id,
            _shown(percent),
        )


def _call_quietly(callback: Callable[[], None]) -> None:
    """A cancel callback of the runtime's: its error is logged, never raised into the
    heartbeat that lost the lease."""
    try:
        callback()
    except Exception:  # noqa: BLE001 - a bug of the runtime's: logged, the worker goes on
        logging.getLogger("jobtrail.worker").exception("a cancel callback failed")


def _percent(value: object) -> int | None:
    """``value`` as a whole percentage from 0 to 100; None if it is not a finite number."""
    try:
        if isinstance(value, int):
            return max(0, min(100, int(value)))
        number = float(value)  # type: ignore[arg-type]  # a float, a numeric str, a Decimal…
    except Exception:  # noqa: BLE001 - whatever the processor passed: ignored, not raised
        return None
    return int(max(0.0, min(100.0, number))) if math.isfinite(number) else None


def _shown(value: object) -> str:
    if isinstance(value, float):
        return repr(float(value))  # nan, inf
    try:
        return f"of type {type(value).__name__}"
    except Exception:  # noqa: BLE001 - a metaclass of the processor's own
        return "of an unnamed type"


class BaseProcessor(abc.ABC):
    """Runs jobs of one type. Return a JSON-compatible result, or raise.

    Raise one of jobtrail's typed errors (a `UserError` such as `InvalidInput`, which the
    requester must fix; a `TransientError` such as `UpstreamTimeout`, retried with backoff);
    any other exception is treated as an unexpected system error. A plain function can be a
    processor too: see `Registry.processor`.

    ``process`` may be ``async def``: the worker then runs the attempt as a task on its one
    event loop instead of on a thread of its own (docs/async.md); it raises, returns and
    reports progress as a plain one does.
    """

    job_type: str
    """The job type this processor runs; a class attribute of each subclass."""

    @abc.abstractmethod
    def process(self, job: JobView, ctx: JobContext) -> Any:
        """Do the work of one attempt."""
