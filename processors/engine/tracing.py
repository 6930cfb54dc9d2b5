"""One OpenTelemetry span per attempt, when OpenTelemetry is installed (the ``otel`` extra).

The span (``jobtrail.process <job type>``, kind CONSUMER) continues the trace the job was
submitted in: its parent is the ``traceparent`` kept in the job's `JobQueued` metadata
(`Job.traceparent`). It is the current span while the processor runs, so what the
processor traces itself (an instrumented HTTP call, a database query) nests under it, and
it records the attempt's outcome: ``jobtrail.outcome`` (``completed`` or ``failed``), the
error's type, code, category and retryability, and an error status on failure.

An async attempt (`run_async`) gets the same span, opened and closed in the attempt's own
asyncio task: a task runs in a copy of the context, so its span is current for its
coroutine only, never for the other attempts on the event loop.

OpenTelemetry is optional: it is imported once, when the processor threads are made, and
without it (or with the API but no SDK configured) an attempt runs exactly as before. The
tracing never fails an attempt: an error of its own is logged at DEBUG and ignored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from jobtrail.domain.job import Job
from jobtrail.processors.engine.outcomes import Finished

log = logging.getLogger("jobtrail.worker")

TRACER_NAME = "jobtrail"
SPAN_PREFIX = "jobtrail.process"


class AttemptTracer:
    """Runs attempts inside their span; a plain call when OpenTelemetry is missing."""

    def __init__(self) -> None:
        self._otel = _load()

    @property
    def enabled(self) -> bool:
        return self._otel is not None

    def run(self, job: Job, attempt: Callable[[], Finished]) -> Finished:
        """``attempt()`` inside the job's span; its `Finished` recorded on the span."""
        if self._otel is None:
            return attempt()
        opened = self._open(job)
        if opened is None:
            return attempt()
        span, token = opened
        try:
            finished = attempt()
            self._record(span, finished)
            return finished
        finally:
            self._close(span, token)

    async def run_async(self, job: Job, attempt: Callable[[], Awaitable[Finished]]) -> Finished:
        """`run` for an async attempt: the span is current in the attempt's own task (each
        task has its own context), so what the coroutine traces nests under it."""
        if self._otel is None:
            return await attempt()
        opened = self._open(job)
        if opened is None:
            return await attempt()
        span, token = opened
        try:
            finished = await attempt()
            self._record(span, finished)
            return finished
        finally:
            self._close(span, token)

    def _open(self, job: Job) -> tuple[Any, object] | None:
        otel = self._otel
        assert otel is not None
        try:
            parent = None
            if job.traceparent is not None:
                parent = otel.propagator.extract({"traceparent": job.traceparent})
            span = otel.trace.get_tracer(TRACER_NAME).start_span(
                f"{SPAN_PREFIX} {job.job_type}",
                context=parent,
                kind=otel.trace.SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "jobtrail",
                    "jobtrail.job.id": job.id,
                    "jobtrail.job.type": job.job_type,
                    "jobtrail.job.attempt": job.attempt,
                    "jobtrail.job.max_attempts": job.max_attempts,
                    "jobtrail.job.queue": job.queue,
                },
            )
            token = otel.context.attach(otel.trace.set_span_in_context(span))
        except Exception as error:  # noqa: BLE001 - tracing must never fail a job
            log.debug("could not open the span of job %s: %r", job.id, error)
            return None
        return span, token

    def _record(self, span: Any, finished: Finished) -> None:
        otel = self._otel
        assert otel is not None
        try:
            error = finished.error
            span.set_attribute("jobtrail.duration_ms", round(finished.elapsed * 1000, 3))
            if error is None:
                span.set_attribute("jobtrail.outcome", "completed")
                span.set_status(otel.trace.Status(otel.trace.StatusCode.OK))
                return
            span.set_attributes(
                {
                    "jobtrail.outcome": "failed",
                    "error.type": error.type_name,
                    "jobtrail.error.code": error.code,
                    "jobtrail.error.category": error.category.value,
                    "jobtrail.error.retryable": error.retryable,
                }
            )
            span.set_status(
                otel.trace.Status(otel.trace.StatusCode.ERROR, f"{error.code}: {error.message}")
            )
        except Exception as failure:  # noqa: BLE001 - tracing must never fail a job
            log.debug("could not record the outcome of job %s: %r", finished.job_id, failure)

    def _close(self, span: Any, token: object) -> None:
        otel = self._otel
        assert otel is not None
        try:
            otel.context.detach(token)
            span.end()
        except Exception as error:  # noqa: BLE001 - tracing must never fail a job
            log.debug("could not close a span: %r", error)


class _Otel:
    """The OpenTelemetry modules an attempt's span needs, imported together."""

    def __init__(self, trace: Any, context: Any, propagator: Any) -> None:
        self.trace = trace
        self.context = context
        self.propagator = propagator


def _load() -> _Otel | None:
    """OpenTelemetry's API if it is installed, else None (it is an optional extra)."""
    try:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        log.debug("OpenTelemetry is not installed: attempts are not traced")
        return None
    return _Otel(trace, context, TraceContextTextMapPropagator())
