"""The progress throttle of `JobContext`, on a clock the test moves; and the order in which a
processor's reports and its outcome reach the worker's main loop (issue 11)."""

from __future__ import annotations

import logging
import queue
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from jobtrail.domain.job import Job
from jobtrail.processors.base import JobContext, JobView
from jobtrail.processors.engine.outcomes import Finished, Progressed, Reported, Running
from jobtrail.processors.engine.runner import ProcessorThreads
from jobtrail.processors.registry import Registry

VIEW = JobView(id="j", job_type="t", payload={}, attempt=1, max_attempts=3)


def context_on(clock: list[float], reports: list[int]) -> JobContext:
    return JobContext(VIEW, lambda p, m: reports.append(p), 1.0, clock=lambda: clock[0])


def test_reports_closer_than_the_interval_are_dropped() -> None:
    clock, reports = [0.0], []
    ctx = context_on(clock, reports)
    for step in range(10):
        clock[0] = step * 0.3
        ctx.progress(step * 10)
    assert reports == [0, 40, 80], "one report per second of the clock reaches the log"


def test_a_repeated_percentage_is_dropped_however_late() -> None:
    clock, reports = [0.0], []
    ctx = context_on(clock, reports)
    ctx.progress(50)
    clock[0] = 5.0
    assert ctx.progress(50) is False
    assert ctx.progress(60) is True
    assert reports == [50, 60]


def test_percentages_are_clamped_to_0_through_100() -> None:
    clock, reports = [0.0], []
    ctx = context_on(clock, reports)
    ctx.progress(150)
    clock[0] = 2.0
    ctx.progress(-5)
    assert reports == [100, 0]


# ------------------------------------------------- what the throttle holds back, and NaN


def test_the_report_the_throttle_held_back_last_is_sent_when_the_attempt_ends() -> None:
    clock, reports = [0.0], []
    ctx = context_on(clock, reports)
    ctx.progress(10)
    clock[0] = 0.2
    assert ctx.progress(60) is False
    clock[0] = 0.4
    assert ctx.progress(90) is False  # the latest one held back wins
    ctx.finish()
    assert reports == [10, 90]
    clock[0] = 5.0
    assert ctx.progress(95) is False, "nothing is reported once the attempt ended"
    ctx.finish()
    assert reports == [10, 90]


def test_nothing_is_sent_at_the_end_when_the_log_already_says_it() -> None:
    clock, reports = [0.0], []
    ctx = context_on(clock, reports)
    ctx.progress(50)
    clock[0] = 0.2
    ctx.progress(70)  # held back…
    ctx.progress(50)  # …and taken back: the log already says 50
    ctx.finish()
    assert reports == [50]


def test_a_hand_back_sends_nothing_held_back() -> None:
    clock, reports = [0.0], []
    ctx = context_on(clock, reports)
    ctx.progress(10)
    clock[0] = 0.1
    ctx.progress(20)
    ctx.finish(flush=False)
    assert reports == [10]


@pytest.mark.parametrize(
    "percent", [float("nan"), float("inf"), float("-inf"), None, "half", object(), "1e999"]
)
def test_a_percentage_that_is_not_a_finite_number_is_ignored_with_a_log_line(
    percent: object, caplog: pytest.LogCaptureFixture
) -> None:
    clock, reports = [0.0], []
    ctx = context_on(clock, reports)
    with caplog.at_level(logging.DEBUG, "jobtrail.processor"):
        assert ctx.progress(percent) is False  # type: ignore[arg-type]
        assert ctx.progress(percent) is False  # type: ignore[arg-type]
    assert reports == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, "one warning per attempt, however often the processor repeats it"
    assert "ignored: a percentage must be a finite number" in warnings[0].getMessage()
    assert ctx.progress(40) is True and reports == [40]


def test_numbers_of_other_types_are_read_as_percentages() -> None:
    clock, reports = [0.0], []
    ctx = context_on(clock, reports)
    for step, percent in enumerate([12.9, "30", Decimal("45.5"), True, 10**30]):
        clock[0] = float(step * 2)
        ctx.progress(percent)  # type: ignore[arg-type]
    assert reports == [12, 30, 45, 1, 100]


# ------------------------------------------------- order: progress, then the outcome


def run_attempt(
    processor: Callable[[JobView, JobContext], Any], clock: list[float]
) -> list[Reported]:
    """One attempt run by the processor threads' code, on a clock the processor moves;
    returns what reached the main loop's queue, in order."""
    registry = Registry()
    registry.processor("t")(processor)
    done: queue.Queue[Reported] = queue.Queue()
    threads = ProcessorThreads(registry, queue.Queue(), done, 1, 1.0, clock=lambda: clock[0])
    job = Job(id="j", job_type="t", attempt=1, max_attempts=3)
    running = Running(job, threads.context_for(job), 0.0)
    done.put(threads.process(running))
    return [done.get_nowait() for _ in range(done.qsize())]


def test_progress_reports_then_the_result_in_the_order_the_processor_made_them() -> None:
    clock = [0.0]

    def processor(job: JobView, ctx: JobContext) -> dict[str, int]:
        for percent in (10, 40, 70, 100):  # 0.4 s apart: every other one is held back
            ctx.progress(percent, f"at {percent}")
            clock[0] += 0.6
        return {"frames": 4}

    reported = run_attempt(processor, clock)

    assert [(type(r).__name__, getattr(r, "percent", None)) for r in reported] == [
        ("Progressed", 10),
        ("Progressed", 70),
        ("Progressed", 100),  # held back by the throttle, sent before the result
        ("Finished", None),
    ]
    assert reported[2] == Progressed("j", 1, 100, "at 100")
    finished = reported[-1]
    assert isinstance(finished, Finished) and finished.result == {"frames": 4}


def test_a_failure_comes_after_the_progress_made_before_it() -> None:
    clock = [0.0]

    def processor(job: JobView, ctx: JobContext) -> None:
        ctx.progress(10)
        clock[0] += 0.1
        ctx.progress(float("nan"))  # ignored, not raised
        ctx.progress(30, "uploading")
        raise SystemExit(3)

    reported = run_attempt(processor, clock)

    assert [getattr(r, "percent", None) for r in reported] == [10, 30, None]
    finished = reported[-1]
    assert isinstance(finished, Finished) and finished.error is not None
    assert (finished.error.type_name, finished.error.code, finished.error.message) == (
        "SystemExit",
        "unexpected_error",
        "SystemExit: 3",
    )
