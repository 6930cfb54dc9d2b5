"""The progress throttle of `JobContext`, on a clock the test moves."""

from __future__ import annotations

from jobtrail.processors.base import JobContext, JobView

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
