"""Async processors (``async def process``): the same outcomes as plain ones, on one event loop.

What the thread path guarantees (tests/integration/test_worker.py, test_hostile_processors.py)
is checked here for coroutines: typed errors, unstorable results, hostile exceptions, progress
and its order, cooperative cancellation and `Task.cancel` after the grace period, hand-back on
SIGTERM and reaping after SIGKILL through the CLI, fencing of a stale attempt; and what only
an event loop adds: many attempts on few threads, ``concurrency`` counting both kinds, a
blocked or dying loop. The CLI tests load ``tests.fixtures.async_processors`` with ``--app``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from jobtrail import BaseProcessor, InvalidInput, UpstreamTimeout
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.domain.events import TERMINAL_EVENT_TYPES
from jobtrail.domain.job import Job
from jobtrail.domain.ports import Clock
from jobtrail.domain.retry import RetryPolicy
from jobtrail.domain.services import JobSpec
from jobtrail.processors.base import JobContext, JobView
from jobtrail.processors.engine.event_loop import EventLoopThread
from jobtrail.processors.engine.outcomes import Finished, Progressed, Reported, Running
from jobtrail.processors.engine.reaper import Reaper
from jobtrail.processors.engine.runner import ProcessorThreads
from jobtrail.processors.engine.worker import Worker, WorkerSettings, WorkerStats
from jobtrail.processors.registry import AsyncFunctionProcessor, Registry

from tests.fixtures import async_processors
from tests.helpers import check_history, check_projection
from tests.integration.test_bad_json import failed_once, replay_is_clean, run_to_the_end
from tests.integration.test_hostile_processors import (
    EXPECTED,
    NOT_JSON,
    assert_failed_as_expected,
)
from tests.integration.test_worker import types_of, wait_for

APP = "tests.fixtures.async_processors:registry"
ROOT = Path(__file__).resolve().parents[2]
FAST = WorkerSettings(until_empty=True, poll_seconds=0.01, progress_seconds=0.05)
ONE_AT_A_TIME = WorkerSettings(until_empty=True, poll_seconds=0.01, concurrency=1, prefetch=1)


def terminal_events(trail: Jobtrail, job_id: str) -> list[str]:
    return [t for t in types_of(trail, job_id) if t in TERMINAL_EVENT_TYPES]


# ------------------------------------------------------------------ the registry


def test_async_processors_are_registered_as_async() -> None:
    class AsyncClass(BaseProcessor):
        job_type = "as_class"

        async def process(self, job: JobView, ctx: JobContext) -> Any:
            return 1

    class AsyncCallable:
        async def __call__(self, job: JobView, ctx: JobContext) -> Any:
            return 2

    async def as_function(job: JobView, ctx: JobContext) -> Any:
        return 3

    def plain(job: JobView, ctx: JobContext) -> Any:
        return 4

    registry = Registry([AsyncClass()])
    assert registry.processor("as_function")(as_function) is as_function  # still the function
    registry.processor("as_callable")(AsyncCallable())
    registry.processor("plain")(plain)

    assert registry.has_async
    assert [t for t in registry.job_types if registry.is_async(t)] == [
        "as_callable",
        "as_class",
        "as_function",
    ]
    assert isinstance(registry.get("as_function"), AsyncFunctionProcessor)
    assert not Registry([]).has_async and not Registry().is_async("plain")
    only_plain = Registry()
    only_plain.processor("plain")(plain)
    assert not only_plain.has_async


def test_an_async_generator_is_refused_when_registering() -> None:
    async def generates(job: JobView, ctx: JobContext) -> Any:
        yield 1

    class Generates(BaseProcessor):
        job_type = "generates"

        async def process(self, job: JobView, ctx: JobContext) -> Any:  # type: ignore[override]
            yield 1

    registry = Registry()
    with pytest.raises(TypeError, match="async generator"):
        registry.processor("generates")(generates)
    with pytest.raises(TypeError, match=r"Generates.process is an async generator"):
        registry.register(Generates())
    assert len(registry) == 0


# ------------------------------------------------------------------ the runner, by hand


def test_a_context_calls_its_cancel_callbacks_once_and_never_raises_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """How an async attempt learns of a lost lease: `JobContext.when_cancelled`."""
    ctx = JobContext(JobView("j", "t", {}, 1, 3), lambda percent, message: None)
    called: list[str] = []

    def broken() -> None:
        raise RuntimeError("a bug")

    ctx.when_cancelled(lambda: called.append("before"))
    ctx.when_cancelled(broken)
    with caplog.at_level(logging.ERROR, logger="jobtrail.worker"):
        ctx.cancel()
        ctx.cancel()
    ctx.when_cancelled(lambda: called.append("after"))

    assert ctx.cancelled
    assert called == ["before", "after"]
    assert [r.getMessage() for r in caplog.records] == ["a cancel callback failed"]


def twins(body: Any) -> Registry:
    """``body`` as a plain processor (``plain``) and as an async one (``async``)."""
    registry = Registry()
    registry.processor("plain")(body)

    async def run_async(job: JobView, ctx: JobContext) -> Any:
        return body(job, ctx)

    registry.processor("async")(run_async)
    return registry


def reports_of(threads: ProcessorThreads, done: queue.Queue[Reported]) -> list[Any]:
    items = [done.get_nowait() for _ in range(done.qsize())]
    return [(i.percent, i.message) if isinstance(i, Progressed) else i.error for i in items]


def reports(registry: Registry, job_type: str, fail: bool, way: str, clock: list[float]) -> Any:
    """What one attempt puts on the done queue: progress (percent, message), then its
    outcome's error (None for a result)."""
    done: queue.Queue[Reported] = queue.Queue()
    threads = ProcessorThreads(registry, queue.Queue(), done, 1, 1.0, clock=lambda: clock[0])
    job = Job(id="j", job_type=job_type, payload={"fail": fail}, attempt=1, max_attempts=3)
    running = Running(job, threads.context_for(job), 0.0)
    if way == "process":
        done.put(threads.process(running))
    else:
        threads.start_async(running)
        wait_for(lambda: not threads.on_the_loop, 10, "the async attempt to end")
    threads.stop()
    items = [done.get_nowait() for _ in range(done.qsize())]
    return [(i.percent, i.message) if isinstance(i, Progressed) else i.error for i in items]


@pytest.mark.parametrize("fail", [False, True], ids=["result", "error"])
def test_an_async_attempt_reports_what_a_plain_one_does_in_the_same_order(fail: bool) -> None:
    """Progress, the progress the throttle held back, then the outcome: the same items for
    both kinds, whether the async attempt is run by `process` (waiting for it) or handed to
    the event loop (`start_async`)."""
    clock = [0.0]

    def body(job: JobView, ctx: JobContext) -> Any:
        for percent in (10, 40, 70, 100):  # 0.6 s apart: every other one is held back
            ctx.progress(percent, f"at {percent}")
            clock[0] += 0.6
        if job.payload["fail"]:
            raise UpstreamTimeout("the renderer did not answer")
        return {"frames": 4}

    registry = twins(body)
    plain = reports(registry, "plain", fail, "process", clock)
    assert plain[:-1] == [(10, "at 10"), (70, "at 70"), (100, "at 100")]
    assert (plain[-1] is None) is not fail
    for way in ("process", "start_async"):
        clock[0] = 0.0
        got = reports(registry, "async", fail, way, clock)
        assert got[:-1] == plain[:-1], way
        if fail:
            assert (got[-1].code, got[-1].message) == (plain[-1].code, plain[-1].message)
        else:
            assert got[-1] is None


def forever(
    cancelled_errors: list[float], seen_cancelled: list[float], started: list[str] | None = None
) -> Registry:
    """An async processor that ignores ``ctx.cancelled`` (noting when it saw it): only a
    cancelled task ends it."""
    registry = Registry()

    @registry.processor("forever")
    async def run_forever(job: JobView, ctx: JobContext) -> Any:
        if started is not None:
            started.append(job.id)
        try:
            while True:
                if ctx.cancelled and not seen_cancelled:
                    seen_cancelled.append(time.monotonic())
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            cancelled_errors.append(time.monotonic())
            raise

    return registry


def running_forever(threads: ProcessorThreads, started: list[str]) -> Running:
    job = Job(id="j", job_type="forever", attempt=1, max_attempts=3)
    running = Running(job, threads.context_for(job), time.monotonic())
    threads.start_async(running)
    wait_for(lambda: bool(started), 10, "the processor to start")
    return running


def finished_items(done: queue.Queue[Reported]) -> list[Finished]:
    items = [done.get_nowait() for _ in range(done.qsize())]
    return [item for item in items if isinstance(item, Finished)]


def test_a_hand_back_cancels_the_task_and_the_attempt_reports_once() -> None:
    cancelled: list[float] = []
    done: queue.Queue[Reported] = queue.Queue()
    started: list[str] = []
    threads = ProcessorThreads(forever(cancelled, [], started), queue.Queue(), done, 4, 1.0)
    running = running_forever(threads, started)

    threads.hand_back(running)
    wait_for(lambda: not threads.on_the_loop, 10, "the task to end")

    assert len(cancelled) == 1, "the task was not cancelled"
    (finished,) = finished_items(done)
    assert finished.error is not None and finished.error.code == "worker_shutdown"
    threads.stop()


def test_an_attempt_handed_back_before_it_began_never_runs_and_frees_its_place() -> None:
    """Concurrency 1: the first job was handed back before the loop began it; it reports
    once, its processor never runs, and its place goes to the next job."""
    started: list[str] = []
    todo: queue.Queue[Running | None] = queue.Queue()
    done: queue.Queue[Reported] = queue.Queue()
    threads = ProcessorThreads(forever([], [], started), todo, done, 1, 1.0)
    threads.start()
    jobs = [Job(id=name, job_type="forever", attempt=1, max_attempts=3) for name in "ab"]
    first, second = (Running(job, threads.context_for(job), 0.0) for job in jobs)

    threads.hand_back(first)
    todo.put(first)
    todo.put(second)
    wait_for(lambda: bool(started), 10, "the second job to start")

    assert started == ["b"]
    (finished,) = finished_items(done)
    assert finished.job_id == "a" and finished.error is not None
    assert finished.error.code == "worker_shutdown"
    threads.hand_back(second)
    wait_for(lambda: not threads.on_the_loop, 10, "the second task to end")
    assert [f.job_id for f in finished_items(done)] == ["b"]
    threads.stop()


def test_a_lost_lease_cancels_the_task_after_the_grace_period() -> None:
    cancelled: list[float] = []
    seen: list[float] = []
    done: queue.Queue[Reported] = queue.Queue()
    started: list[str] = []
    threads = ProcessorThreads(
        forever(cancelled, seen, started), queue.Queue(), done, 4, 1.0, grace_seconds=1.0
    )
    running = running_forever(threads, started)

    lost_at = time.monotonic()
    running.ctx.cancel()  # what the heartbeat does when the lease is not renewed
    wait_for(lambda: not threads.on_the_loop, 30, "the task to be cancelled")

    (cancelled_at,) = cancelled
    assert seen and seen[0] < cancelled_at, "ctx.cancelled is set before the task is cancelled"
    assert cancelled_at - lost_at >= 0.99, "cancelled before the grace period was over"
    (finished,) = finished_items(done)
    assert finished.error is not None
    assert (finished.error.code, finished.error.retryable) == ("lease_expired", True)
    threads.stop()


# ------------------------------------------------------------------ typed errors, results


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_an_async_batch_ends_as_the_payloads_say(
    request: pytest.FixtureRequest, backend: str
) -> None:
    trail = connect(request.getfixturevalue(f"{backend}_url"), policy=RetryPolicy(base_delay=0.05))
    specs = {
        "ok": JobSpec("shot_video_generation", {"duration_ms": 20}),
        "broke": JobSpec("asset_image_generation", {"credits": 1, "cost": 2}),
        "flaky": JobSpec("asset_image_generation", {"fail_times": 1}, max_attempts=2),
        "hopeless": JobSpec("asset_image_generation", {"fail_times": 9}, max_attempts=2),
        "crash": JobSpec("shot_video_generation", {"crash": True}),
        "bad": JobSpec("shot_video_generation", {"credits": "lots"}),
        "unknown": JobSpec("storyboard_export"),
        "plain": JobSpec("plain", {"n": 5}),
    }
    ids = dict(zip(specs, trail.submit_many(list(specs.values())), strict=True))
    settings = WorkerSettings(concurrency=3, until_empty=True, poll_seconds=0.01)
    stats = run_to_the_end(trail, async_processors.registry, settings)

    outcome = {
        name: (trail.get(i)["status"], trail.get(i)["error_code"]) for name, i in ids.items()
    }
    assert outcome == {
        "ok": ("completed", None),
        "broke": ("failed", "insufficient_credits"),
        "flaky": ("completed", None),
        "hopeless": ("failed", "upstream_timeout"),
        "crash": ("failed", "unexpected_error"),
        "bad": ("failed", "invalid_input"),
        "unknown": ("failed", "unknown_job_type"),
        "plain": ("completed", None),
    }
    crash = trail.get(ids["crash"])
    assert crash["error_message"] == "RuntimeError: simulated crash in the renderer"
    assert crash["error_category"] == "system"
    assert trail.get(ids["broke"])["error_category"] == "user"
    assert trail.get(ids["ok"])["result"]["video_url"].endswith(ids["ok"])
    assert (stats.completed, stats.failed, stats.retried) == (3, 5, 2)
    for job_id in ids.values():
        check_history(job_id, trail.history(job_id))
        check_projection(trail, job_id)
    trail.close()


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_a_hostile_async_processor_fails_its_job_once_and_the_worker_goes_on(
    capsys: pytest.CaptureFixture[str], trail: Jobtrail, backend_url: str, kind: str
) -> None:
    bad = trail.submit("hostile", {"kind": kind}, max_attempts=3)
    good = trail.submit("normal", {"n": 1})  # after it, on the worker's one place

    stats = run_to_the_end(trail, async_processors.registry, ONE_AT_A_TIME)

    assert_failed_as_expected(trail, bad, kind)
    assert trail.get(good)["status"] == "completed"
    assert trail.get(good)["result"] == {"n": 1}
    assert (stats.completed, stats.failed, stats.retried, stats.absorbed) == (1, 1, 0, 0)
    replay_is_clean(capsys, backend_url)


UNSTORABLE = {
    **NOT_JSON,
    "a coroutine as its result": "result: a value of type coroutine is not JSON",
}


@pytest.mark.filterwarnings("ignore:coroutine 'never_awaited' was never awaited")
@pytest.mark.parametrize("kind", list(UNSTORABLE))
def test_an_async_result_that_cannot_be_stored_fails_as_invalid_result(
    trail: Jobtrail, kind: str
) -> None:
    bad = trail.submit("hostile", {"kind": kind})
    good = trail.submit("normal", {"n": 2})

    stats = run_to_the_end(trail, async_processors.registry, ONE_AT_A_TIME)

    row = failed_once(trail, bad)
    assert row["error_code"] == "invalid_result"
    assert row["error_message"].startswith(UNSTORABLE[kind]), row["error_message"]
    assert trail.get(good)["status"] == "completed"
    assert (stats.completed, stats.failed) == (1, 1)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_what_a_coroutine_does_to_the_event_loop_stops_neither_the_loop_nor_the_worker(
    trail: Jobtrail, caplog: pytest.LogCaptureFixture
) -> None:
    """A stray task's SystemExit or KeyboardInterrupt (re-raised out of the loop by asyncio),
    ``loop.stop()``: the loop runs on and the attempt completes. A CancelledError the
    processor raises itself is a failure like any exception."""
    survivors = [
        "a stray task raises SystemExit",
        "a stray task raises KeyboardInterrupt",
        "loop.stop()",
    ]
    ids = {kind: trail.submit("hostile", {"kind": kind}) for kind in survivors}
    cancelled = trail.submit("hostile", {"kind": "CancelledError"})
    after = [trail.submit("normal", {"n": n}) for n in range(3)]

    with caplog.at_level(logging.WARNING, logger="jobtrail.worker"):
        stats = run_to_the_end(trail, async_processors.registry, ONE_AT_A_TIME)

    for kind, job_id in ids.items():
        assert trail.get(job_id)["status"] == "completed", kind
        assert trail.get(job_id)["result"] == {"survived": kind.split()[-1]}
    row = failed_once(trail, cancelled)
    assert (row["error_type"], row["error_code"], row["error_message"]) == (
        "CancelledError",
        "unexpected_error",
        "CancelledError",
    )
    assert {trail.get(job_id)["status"] for job_id in after} == {"completed"}
    assert (stats.completed, stats.failed) == (6, 1)
    said = [record.getMessage() for record in caplog.records]
    assert sum("raised SystemExit out of the event loop" in line for line in said) == 1
    assert sum("raised KeyboardInterrupt out of the event loop" in line for line in said) == 1
    assert any("stopped the event loop" in line for line in said)


# ------------------------------------------------------------------ progress


@pytest.mark.postgres
def test_async_progress_is_written_in_order_before_each_outcome(
    pg_trail: Jobtrail, caplog: pytest.LogCaptureFixture
) -> None:
    """As the thread path's test_stats_and_log_lines_count_what_was_recorded_under_concurrency:
    each job's reports, the one the throttle held back included, then its outcome."""
    registry = Registry()

    @registry.processor("chatty")
    async def chatty(job: JobView, ctx: JobContext) -> dict[str, int]:
        ctx.progress(10, "started")
        await asyncio.sleep(0.001)
        ctx.progress(90, "almost")  # within the throttle's interval: held back, then sent
        if job.payload["n"] % 4 == 0:
            raise InvalidInput("none left")
        return {"n": job.payload["n"]}

    ids = pg_trail.submit_many([JobSpec("chatty", {"n": n}) for n in range(120)])
    settings = WorkerSettings(
        concurrency=16, until_empty=True, poll_seconds=0.005, progress_seconds=60
    )
    with caplog.at_level(logging.INFO, logger="jobtrail.worker"):
        stats = run_to_the_end(pg_trail, registry, settings)

    assert (stats.claimed, stats.completed, stats.failed, stats.absorbed) == (120, 90, 30, 0)
    for n, job_id in enumerate(ids):
        events = pg_trail.history(job_id)
        check_history(job_id, events)
        terminal = "JobFailed" if n % 4 == 0 else "JobCompleted"
        assert [e.type for e in events] == [
            "JobQueued",
            "JobStarted",
            "JobProgressed",
            "JobProgressed",
            terminal,
        ]
        assert [e.data()["percent"] for e in events[2:4]] == [10, 90]


def test_async_progress_is_throttled(trail: Jobtrail) -> None:
    job_id = trail.submit("asset_image_generation", {"duration_ms": 600})
    settings = WorkerSettings(until_empty=True, poll_seconds=0.01, progress_seconds=0.25)
    run_to_the_end(trail, async_processors.registry, settings)
    progressed = [e for e in trail.history(job_id) if e.type == "JobProgressed"]
    assert 1 <= len(progressed) < 10, "ten progress calls must be throttled to fewer events"
    assert trail.get(job_id)["progress"] == 100


# ------------------------------------------------------------------ cancellation, fencing


def run_until_done(worker: Worker, timeout: float = 60) -> WorkerStats:
    """Run a worker (in a thread) until it runs out of work; fail if it stalls instead."""
    outcome: list[WorkerStats] = []
    thread = threading.Thread(target=lambda: outcome.append(worker.run()), daemon=True)
    thread.start()
    thread.join(timeout=timeout)
    if thread.is_alive():
        worker.stop()
        thread.join(timeout=30)
        pytest.fail(f"the worker stalled: it had not run out of work after {timeout} s")
    assert outcome, "the worker died"
    return outcome[0]


def start_worker(trail: Jobtrail, registry: Registry, settings: WorkerSettings) -> Any:
    worker = trail.worker(settings, registry=registry)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    return worker, thread


@pytest.mark.postgres
def test_an_async_job_is_cancelled_cooperatively(pg_trail: Jobtrail) -> None:
    job_id = pg_trail.submit("shot_video_generation", {"duration_ms": 20_000})
    worker, thread = start_worker(
        pg_trail,
        async_processors.registry,
        WorkerSettings(heartbeat_seconds=0.1, poll_seconds=0.01, until_empty=True),
    )
    wait_for(lambda: pg_trail.get(job_id)["status"] == "processing", 10, "the job to start")

    pg_trail.cancel(job_id, "storyboard deleted")
    thread.join(timeout=10)

    assert not thread.is_alive(), "the processor did not notice the cancellation"
    assert terminal_events(pg_trail, job_id) == ["JobCancelled"]
    assert worker.stats.absorbed == 1 and worker.stats.completed == 0


@pytest.mark.postgres
def test_an_async_job_that_ignores_cancelled_is_cancelled_after_the_grace_period(
    pg_trail: Jobtrail,
) -> None:
    cancelled: list[float] = []
    seen: list[float] = []
    job_id = pg_trail.submit("forever")
    worker, thread = start_worker(
        pg_trail,
        forever(cancelled, seen),
        WorkerSettings(
            heartbeat_seconds=0.1, poll_seconds=0.01, until_empty=True, grace_seconds=1.0
        ),
    )
    wait_for(lambda: pg_trail.get(job_id)["status"] == "processing", 10, "the job to start")

    cancelled_at = time.monotonic()
    pg_trail.cancel(job_id, "storyboard deleted")
    thread.join(timeout=30)

    assert not thread.is_alive(), "the task was never cancelled"
    assert seen and cancelled and seen[0] < cancelled[0], "ctx.cancelled, then Task.cancel"
    assert cancelled[0] - cancelled_at >= 0.99, "the task was cancelled before the grace period"
    assert terminal_events(pg_trail, job_id) == ["JobCancelled"]
    assert worker.stats.absorbed == 1 and worker.stats.failed == 0


class Ahead(Clock):
    """A clock five minutes ahead: every lease taken now has expired by it."""

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(minutes=5)


@pytest.mark.postgres
def test_a_stale_async_attempt_cannot_complete_a_job_taken_over(pg_trail: Jobtrail) -> None:
    """The first attempt's lease expires while its coroutine runs on; the job is retried by
    another worker. The stale coroutine's result is refused (its attempt is over): the job
    is the second attempt's."""
    go_on = {1: threading.Event(), 2: threading.Event()}
    registry = Registry()

    @registry.processor("slow")
    async def slow(job: JobView, ctx: JobContext) -> dict[str, int]:
        while not go_on[job.attempt].is_set():  # ignores ctx.cancelled: a stale attempt
            await asyncio.sleep(0.01)
        return {"attempt": job.attempt}

    pg_trail.service.policy = RetryPolicy(base_delay=0)
    job_id = pg_trail.submit("slow", max_attempts=3)
    stale, stale_thread = start_worker(
        pg_trail,
        registry,
        WorkerSettings(heartbeat_seconds=0.1, poll_seconds=0.01, max_jobs=1, grace_seconds=60),
    )
    wait_for(lambda: pg_trail.get(job_id)["status"] == "processing", 10, "attempt 1 to start")
    assert Reaper(pg_trail.service, pg_trail.queue, Ahead()).reap_once() == 1
    fresh, fresh_thread = start_worker(
        pg_trail, registry, WorkerSettings(poll_seconds=0.01, until_empty=True)
    )
    wait_for(lambda: pg_trail.get(job_id)["attempt"] == 2, 10, "attempt 2 to start")

    go_on[1].set()
    stale_thread.join(timeout=30)
    assert not stale_thread.is_alive()
    row = pg_trail.get(job_id)
    assert (row["status"], row["attempt"], row["worker_id"]) == (
        "processing",
        2,
        fresh.worker_id,
    )
    assert (stale.stats.completed, stale.stats.absorbed) == (0, 1)

    go_on[2].set()
    fresh_thread.join(timeout=30)
    row = pg_trail.get(job_id)
    assert (row["status"], row["result"]) == ("completed", {"attempt": 2})
    check_history(job_id, pg_trail.history(job_id))
    assert terminal_events(pg_trail, job_id) == ["JobCompleted"]


# ------------------------------------------------------------------ many on one loop


@pytest.mark.postgres
def test_two_hundred_sleeping_jobs_share_one_event_loop_and_few_threads(
    pg_trail: Jobtrail,
) -> None:
    """200 jobs of ``await asyncio.sleep(0.2)`` at concurrency 200 take about 0.2 s of
    sleeping, not 40 s, on a handful of threads. A behaviour check: the bound is generous."""
    registry = Registry()
    running, peak, threads = [0], [0], [0]
    before = threading.active_count()

    @registry.processor("nap")
    async def nap(job: JobView, ctx: JobContext) -> dict[str, int]:
        running[0] += 1
        peak[0] = max(peak[0], running[0])
        threads[0] = max(threads[0], threading.active_count())
        await asyncio.sleep(0.2)
        running[0] -= 1
        return {"n": job.payload["n"]}

    pg_trail.submit_many([JobSpec("nap", {"n": n}) for n in range(200)])
    worker = pg_trail.worker(
        WorkerSettings(concurrency=200, until_empty=True, poll_seconds=0.01), registry=registry
    )
    started = time.monotonic()
    stats = run_until_done(worker)
    took = time.monotonic() - started

    assert stats.completed == 200
    assert took < 20, f"took {took:.1f} s: the naps did not overlap"
    assert peak[0] >= 50, f"at most {peak[0]} naps overlapped"
    assert threads[0] - before < 20, f"{threads[0] - before} threads for 200 async jobs"
    assert worker._threads.thread_count == 1, "a thread per async attempt"


def test_concurrency_counts_async_and_plain_attempts_together(trail: Jobtrail) -> None:
    lock = threading.Lock()
    running, peak = [0], [0]

    def enter() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])

    def leave() -> None:
        with lock:
            running[0] -= 1

    registry = Registry()

    @registry.processor("async_nap")
    async def async_nap(job: JobView, ctx: JobContext) -> None:
        enter()
        await asyncio.sleep(0.05)
        leave()

    @registry.processor("plain_nap")
    def plain_nap(job: JobView, ctx: JobContext) -> None:
        enter()
        time.sleep(0.05)
        leave()

    specs = [JobSpec("async_nap") for _ in range(20)] + [JobSpec("plain_nap") for _ in range(8)]
    trail.submit_many(specs)
    settings = WorkerSettings(concurrency=3, until_empty=True, poll_seconds=0.01)
    worker = trail.worker(settings, registry=registry)
    stats = run_until_done(worker)

    assert stats.completed == 28
    assert 2 <= peak[0] <= 3, f"{peak[0]} attempts ran at once with concurrency 3"
    assert worker._threads.thread_count <= 3


# ------------------------------------------------------------------ a blocked or dead loop


def test_a_blocked_event_loop_is_logged_and_the_worker_goes_on(
    trail: Jobtrail, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = trail.submit("hostile", {"kind": "time.sleep", "seconds": 2.0}, priority=1)
    others = [trail.submit("normal", {"n": n}) for n in range(5)]

    with caplog.at_level(logging.INFO, logger="jobtrail.worker"):
        stats = run_to_the_end(trail, async_processors.registry, FAST)

    assert stats.completed == 6
    assert {trail.get(job_id)["status"] for job_id in [blocker, *others]} == {"completed"}
    said = [record.getMessage() for record in caplog.records]
    blocked = [line for line in said if "has not run for" in line]
    assert len(blocked) == 1, said
    assert f"job {blocker} blocks it" in blocked[0]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_event_loop_that_dies_is_noticed_its_jobs_failed_and_the_loop_replaced(
    capsys: pytest.CaptureFixture[str],
    trail: Jobtrail,
    backend_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Should the loop's thread die (here: a stray task's SystemExit, let through on
    purpose), the job it ran fails once, and the next job runs on a new loop."""

    def die(self: EventLoopThread, error: BaseException) -> None:
        raise error

    monkeypatch.setattr(EventLoopThread, "_survive", die)
    doomed = trail.submit("hostile", {"kind": "a stray task raises SystemExit"}, priority=1)
    good = trail.submit("normal", {"n": 1})

    stats = run_to_the_end(trail, async_processors.registry, ONE_AT_A_TIME)

    row = failed_once(trail, doomed)
    assert (row["error_code"], row["error_message"]) == (
        "system_error",
        "the worker thread running the processor died",
    )
    assert trail.get(good)["status"] == "completed"
    assert (stats.completed, stats.failed) == (1, 1)
    assert any("event loop running async processors died" in r.message for r in caplog.records)
    replay_is_clean(capsys, backend_url)


# ------------------------------------------------------------------ tracing


def test_each_async_attempt_is_its_own_current_span(sqlite_url: str) -> None:
    """The attempt's span is current inside its coroutine, and only there: two attempts
    running at once on the loop each see their own."""
    pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    registry = Registry()

    @registry.processor("traced")
    async def traced(job: JobView, ctx: JobContext) -> dict[str, str]:
        await asyncio.sleep(0.1)  # the other attempt runs meanwhile
        span = trace.get_current_span().get_span_context()
        return {"span": format(span.span_id, "016x")}

    trail = connect(sqlite_url)
    try:
        ids = [trail.submit("traced") for _ in range(2)]
        run_to_the_end(
            trail, registry, WorkerSettings(concurrency=2, until_empty=True, poll_seconds=0.01)
        )
        seen = {job_id: trail.get(job_id)["result"]["span"] for job_id in ids}
    finally:
        trail.close()
    spans = {
        span.attributes["jobtrail.job.id"]: span
        for span in exporter.get_finished_spans()
        if span.attributes.get("jobtrail.job.id") in ids
    }
    for job_id in ids:
        assert seen[job_id] == format(spans[job_id].context.span_id, "016x")
        assert spans[job_id].attributes["jobtrail.outcome"] == "completed"
    assert len(set(seen.values())) == 2
    exporter.clear()


# ------------------------------------------------------------------ through the CLI


@pytest.fixture
def cli_env(postgres_url: str) -> Iterator[dict[str, str]]:
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": postgres_url, "PYTHONUNBUFFERED": "1"}
    env.pop("JOBTRAIL_APP", None)
    yield env


def start_cli_worker(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "jobtrail", "worker", "--app", APP, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.postgres
def test_sigterm_hands_async_jobs_back_after_the_grace_period(
    pg_trail: Jobtrail, cli_env: dict[str, str]
) -> None:
    quick = pg_trail.submit("asset_image_generation", {"duration_ms": 300})
    slow = pg_trail.submit("shot_video_generation", {"duration_ms": 60_000}, max_attempts=3)
    stubborn = pg_trail.submit(
        "shot_video_generation", {"forever": True, "stubborn": True}, max_attempts=3
    )
    worker = start_cli_worker(cli_env, "--grace", "1.5", "--concurrency", "3")
    wait_for(
        lambda: {pg_trail.get(slow)["status"], pg_trail.get(stubborn)["status"]} == {"processing"},
        20,
        "the slow jobs to start",
    )

    worker.send_signal(signal.SIGTERM)
    output, _ = worker.communicate(timeout=20)

    assert worker.returncode == 0, output
    assert "SIGTERM: stopping" in output
    assert "Traceback" not in output, output
    assert pg_trail.get(quick)["status"] == "completed"
    for job_id in (slow, stubborn):
        row = pg_trail.get(job_id)
        assert (row["status"], row["error_code"]) == ("queued", "worker_shutdown"), output
        events = types_of(pg_trail, job_id)
        assert events.count("JobRetryScheduled") == 1, events
        check_history(job_id, pg_trail.history(job_id))


def test_the_cli_worker_runs_every_hostile_async_processor_and_exits_0(
    capsys: pytest.CaptureFixture[str], sqlite_url: str
) -> None:
    trail = connect(sqlite_url)
    kinds = [*EXPECTED, *NOT_JSON]
    specs = []
    for n, kind in enumerate(kinds):
        specs += [JobSpec("hostile", {"kind": kind}), JobSpec("normal", {"n": n})]
    ids = trail.submit_many(specs)
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": sqlite_url, "PYTHONUNBUFFERED": "1"}
    env.pop("JOBTRAIL_APP", None)

    done = subprocess.run(
        [sys.executable, "-m", "jobtrail", "worker", "--app", APP, "--until-empty"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    for kind, bad, good in zip(kinds, ids[::2], ids[1::2], strict=True):
        if kind in NOT_JSON:
            row = failed_once(trail, bad)
            assert (row["error_code"], row["error_message"]) == ("invalid_result", NOT_JSON[kind])
        else:
            assert_failed_as_expected(trail, bad, kind)
        assert trail.get(good)["status"] == "completed", kind
    summary = done.stderr.strip().splitlines()[-1]
    assert summary.startswith(f"claimed {len(ids)}, completed {len(kinds)}, failed {len(kinds)}")
    trail.close()
    replay_is_clean(capsys, sqlite_url)
