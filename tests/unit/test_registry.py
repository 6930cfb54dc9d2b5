"""`Registry`: function processors behave as class processors, and mistakes fail at import.

The worker runs are on SQLite (a file per test): a decorated function and a class with the
same body must leave the same history and the same row, for a result, progress, a typed
user error, a retried transient error and an unexpected exception.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jobtrail import (
    BaseProcessor,
    InvalidInput,
    JobContext,
    Jobtrail,
    JobView,
    Registry,
    RetryPolicy,
    UpstreamTimeout,
    WorkerSettings,
    connect,
)
from jobtrail.processors.registry import FunctionProcessor, default_registry

FAST = WorkerSettings(until_empty=True, poll_seconds=0.01, progress_seconds=0.0)
VIEW = JobView(id="j", job_type="t", payload={"do": "ok", "n": 2}, attempt=1, max_attempts=3)


def body(job: JobView, ctx: JobContext) -> Any:
    """What both processors do, as the payload's ``do`` says."""
    do = job.payload["do"]
    if do == "invalid":
        raise InvalidInput("the size must be positive")
    if do == "flaky" and job.attempt == 1:
        raise UpstreamTimeout("the renderer did not answer")
    if do == "crash":
        raise ZeroDivisionError("division by zero")
    ctx.progress(50, "half way")
    ctx.progress(100, "done")
    return {"doubled": job.payload.get("n", 0) * 2}


class AsClass(BaseProcessor):
    job_type = "as_class"

    def process(self, job: JobView, ctx: JobContext) -> Any:
        return body(job, ctx)


@pytest.fixture
def sqlite_trail(sqlite_url: str) -> Iterator[Jobtrail]:
    trail = connect(sqlite_url, policy=RetryPolicy(base_delay=0.01, max_delay=0.02))
    yield trail
    trail.close()


def both_ways() -> Registry:
    registry = Registry([AsClass()])
    registry.processor("as_function")(body)
    return registry


def outcome(trail: Jobtrail, job_id: str) -> tuple[Any, ...]:
    """The row's fields that tell how a job ended, and its history's event types.

    Progress reports that reach the worker in one loop turn may be written as one event, so
    a run of `JobProgressed` counts as one.
    """
    row = trail.get(job_id)
    events: list[str] = []
    for event in trail.history(job_id):
        if not (event.type == "JobProgressed" and events[-1:] == ["JobProgressed"]):
            events.append(event.type)
    fields = ("status", "attempt", "progress", "result", "error_code", "error_category")
    return (*(row[name] for name in fields), events)


EXPECTED = {
    "ok": (
        "completed",
        1,
        100,
        {"doubled": 6},
        None,
        None,
        ["JobQueued", "JobStarted", "JobProgressed", "JobCompleted"],
    ),
    "invalid": (
        "failed",
        1,
        0,
        None,
        "invalid_input",
        "user",
        ["JobQueued", "JobStarted", "JobFailed"],
    ),
    "flaky": (
        "completed",
        2,
        100,
        {"doubled": 6},
        None,
        None,
        [
            "JobQueued",
            "JobStarted",
            "JobRetryScheduled",
            "JobStarted",
            "JobProgressed",
            "JobCompleted",
        ],
    ),
    "crash": (
        "failed",
        3,
        0,
        None,
        "unexpected_error",
        "system",
        ["JobQueued", "JobStarted", "JobFailed"],
    ),
}


@pytest.mark.parametrize("do", sorted(EXPECTED))
def test_a_function_processor_ends_as_a_class_processor_does(
    sqlite_trail: Jobtrail, do: str
) -> None:
    payload = {"do": do, "n": 3}
    ids = {
        job_type: sqlite_trail.submit(job_type, payload, max_attempts=1 if do == "crash" else 3)
        for job_type in ("as_class", "as_function")
    }
    stats = sqlite_trail.worker(FAST, registry=both_ways()).run()
    assert stats.claimed >= 2
    as_class, as_function = (outcome(sqlite_trail, ids[t]) for t in ("as_class", "as_function"))
    assert as_function == as_class
    expected = EXPECTED[do]
    if do == "crash":  # one attempt allowed: an unexpected error is retryable
        expected = ("failed", 1, *expected[2:])
    assert as_function == expected


def test_an_unexpected_error_keeps_its_type_and_message(sqlite_trail: Jobtrail) -> None:
    registry = Registry()
    registry.processor("divide")(body)
    job_id = sqlite_trail.submit("divide", {"do": "crash"}, max_attempts=1)
    sqlite_trail.worker(FAST, registry=registry).run()
    row = sqlite_trail.get(job_id)
    assert "ZeroDivisionError" in row["error_type"]
    assert "division by zero" in row["error_message"]


def test_the_decorated_function_stays_the_same_callable() -> None:
    registry = Registry()
    decorated = registry.processor("double")(body)
    assert decorated is body
    reports: list[int] = []
    ctx = JobContext(VIEW, lambda percent, _message: reports.append(percent), 0.0)
    assert decorated(VIEW, ctx) == {"doubled": 4}
    assert reports == [50, 100]
    processor = registry.get("double")
    assert isinstance(processor, FunctionProcessor) and processor.function is body


def test_a_job_type_registered_twice_is_refused_and_the_first_kept() -> None:
    registry = Registry([AsClass()])
    with pytest.raises(ValueError, match="'as_class' already has a processor"):
        registry.processor("as_class")(body)
    with pytest.raises(ValueError, match="already has a processor"):
        registry.register(AsClass())
    registry.processor("twice")(body)
    with pytest.raises(ValueError, match="'twice' already has a processor"):
        registry.processor("twice")(lambda job, ctx: None)
    assert isinstance(registry.get("as_class"), AsClass)
    assert registry.get("twice").function is body  # type: ignore[union-attr]


def test_a_duplicate_in_the_constructor_is_refused() -> None:
    with pytest.raises(ValueError, match="already has a processor"):
        Registry([AsClass(), AsClass()])


async def not_a_plain_function(job: JobView, ctx: JobContext) -> Any:
    """An async generator would yield, never return its result (an `async def` that
    returns is a processor: tests/integration/test_async_processors.py)."""
    yield None


@pytest.mark.parametrize(
    ("register", "message"),
    [
        (lambda r: r.processor(body), "name the job type"),
        (lambda r: r.processor("")(body), "non-empty string"),
        (lambda r: r.processor("one_argument")(lambda job: None), r"must take \(job, ctx\)"),
        (lambda r: r.processor("three")(lambda job, ctx, more: None), r"must take \(job, ctx\)"),
        (lambda r: r.processor("async")(not_a_plain_function), "async generator"),
        (lambda r: r.register(AsClass), r"an instance, AsClass\(\)"),
        (lambda r: r.register(body), "not a BaseProcessor"),
    ],
    ids=["bare", "empty", "one-arg", "three-args", "async", "class", "function"],
)
def test_mistakes_are_refused_when_registering(register: Any, message: str) -> None:
    registry = Registry()
    with pytest.raises(TypeError, match=message):
        register(registry)
    assert len(registry) == 0


def test_a_class_processor_without_a_job_type_is_refused() -> None:
    class Untyped(BaseProcessor):
        def process(self, job: JobView, ctx: JobContext) -> Any:
            return None

    with pytest.raises(TypeError, match=r"Untyped.job_type must be a non-empty string"):
        Registry([Untyped()])


def test_defaults_and_keyword_parameters_fit_the_call() -> None:
    registry = Registry()
    registry.processor("with_default")(lambda job, ctx, scale=2: scale)
    registry.processor("varargs")(lambda *args: len(args))
    assert registry.job_types == ["varargs", "with_default"]


def test_a_registry_lists_its_job_types() -> None:
    registry = both_ways()
    assert registry.job_types == ["as_class", "as_function"]
    assert "as_function" in registry and "resize" not in registry
    assert [p.job_type for p in registry] == ["as_class", "as_function"]
    assert repr(registry) == "Registry(as_class, as_function)"
    assert default_registry().job_types == ["asset_image_generation", "shot_video_generation"]
