"""The published event contract (adapters/schemas/job-event.schema.json), type by type.

tests/event_contract.py checks every event the suite appends; this file covers each type on
purpose, with the edge cases a consumer must accept, and shows the schema refuses what it
should (so it is not a schema that accepts anything).
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from jobtrail.adapters.bootstrap import connect
from jobtrail.domain.errors import InsufficientCredits, RateLimited, UnknownJobType, UpstreamTimeout
from jobtrail.domain.events import EVENT_TYPES, Event
from jobtrail.domain.job import Job, Meta

from tests.event_contract import RECORDER, validator, violations
from tests.unit.histories import T0, WORKER, at, policy

USER = Meta(actor="user:42", correlation_id="req-7")


def new_id() -> str:
    return str(uuid.uuid4())


def submitted(**kwargs: Any) -> Job:
    return Job.submit(new_id(), "video", {"shot": 7}, now=T0, **kwargs)


def running(**kwargs: Any) -> Job:
    job = submitted(**kwargs)
    job.start("worker:w1", 30, now=at(1), meta=WORKER)
    return job


def completed_with(result: Any) -> Job:
    job = running()
    job.complete(1, result, now=at(2.5), meta=WORKER)
    return job


def progressed(message: str | None) -> Job:
    job = running()
    job.report_progress(1, 0, message, now=at(2), meta=WORKER)
    job.report_progress(1, 100, message, now=at(3), meta=WORKER)
    return job


def rate_limited() -> Job:
    job = running(max_attempts=2)
    job.fail(RateLimited(retry_after=12.5), 1, now=at(2), policy=policy(), meta=WORKER)
    return job


def retried_then_failed() -> Job:
    job = running(max_attempts=2)
    job.fail(UpstreamTimeout(), 1, now=at(2), policy=policy(), meta=WORKER)
    assert job.available_at is not None
    job.start("worker:w2", 30, now=job.available_at + timedelta(seconds=1), meta=WORKER)
    job.fail(UpstreamTimeout(), 2, now=at(60), policy=policy(), meta=WORKER)
    return job


def unknown_type() -> Job:
    job = submitted()
    job.fail(UnknownJobType(), None, now=at(1), policy=policy())
    return job


def user_error() -> Job:
    job = running()
    job.fail(InsufficientCredits("insufficient credits: 0 left"), 1, now=at(2), policy=policy())
    return job


def cancelled(reason: str | None, meta: Meta, start: bool) -> Job:
    job = running() if start else submitted(idempotency_key="shot-7", priority=-3, delay=60)
    job.cancel(reason, now=at(5), meta=meta)
    return job


CASES = {
    "completed with a null result": lambda: completed_with(None),
    "completed with a list": lambda: completed_with([1, "two", {"three": 3}]),
    "completed with an object": lambda: completed_with({"video_url": "s3://out.mp4"}),
    "progress without a message": lambda: progressed(None),
    "progress with a message": lambda: progressed("rendering frame 12"),
    "rate limited: retry after the upstream's delay": rate_limited,
    "retried, then failed for good": retried_then_failed,
    "unknown type: failed from queued, attempt 0": unknown_type,
    "user error": user_error,
    "cancelled by a user while running, no reason": lambda: cancelled(None, USER, True),
    "cancelled by the system while queued (delayed, keyed)": lambda: cancelled(
        "storyboard deleted", Meta(), False
    ),
}


def envelopes(job: Job) -> list[dict[str, Any]]:
    """The job's events as published: every one with the position the store would give."""
    return [replace(e, position=100 + i).envelope() for i, e in enumerate(job.pending, 1)]


@pytest.mark.parametrize("build", CASES.values(), ids=CASES.keys())
def test_every_event_of_the_case_keeps_the_contract(build: Any) -> None:
    for envelope in envelopes(build()):
        assert violations(envelope) == [], envelope


def test_the_cases_cover_every_event_type_and_the_edge_values() -> None:
    seen = [e for build in CASES.values() for e in envelopes(build())]
    assert {e["type"] for e in seen} == set(EVENT_TYPES)
    data = [(e["type"], e["data"]) for e in seen]
    assert ("JobCompleted", None) in [(t, d["result"]) for t, d in data if t == "JobCompleted"]
    assert None in [d["message"] for t, d in data if t == "JobProgressed"]
    assert 12.5 in [d["delay_seconds"] for t, d in data if t == "JobRetryScheduled"]
    assert 0 in [d["attempt"] for t, d in data if t == "JobFailed"]
    assert "user:42" in [d["by"] for t, d in data if t == "JobCancelled"]


def sample(type_name: str) -> dict[str, Any]:
    for build in CASES.values():
        for envelope in envelopes(build()):
            if envelope["type"] == type_name:
                return copy.deepcopy(envelope)
    raise AssertionError(type_name)


def broken(type_name: str, path: str, value: Any) -> dict[str, Any]:
    """A valid envelope of the type with one field set (or, for value=..., removed)."""
    envelope = sample(type_name)
    *parents, last = path.split("/")
    target = envelope
    for name in parents:
        target = target[name]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return envelope


@pytest.mark.parametrize(
    ("type_name", "path", "value", "complaint"),
    [
        ("JobProgressed", "data/percent", 101, "greater than the maximum"),
        ("JobProgressed", "data/percent", 50.5, "is not of type 'integer'"),
        ("JobCompleted", "data/duration_ms", ..., "'duration_ms' is a required property"),
        ("JobFailed", "data/error_category", "nobody", "is not one of"),
        ("JobFailed", "data/surprise", 1, "Additional properties are not allowed"),
        ("JobQueued", "data/payload", "[]", "is not of type 'object'"),
        ("JobStarted", "data/lease_expires_at", "2026-11-29 13:41", "does not match"),
        ("JobCancelled", "data/by", None, "is not of type 'string'"),
        ("JobCancelled", "schema_version", 2, "1 was expected"),
        ("JobCancelled", "type", "JobArchived", "is not one of"),
        ("JobQueued", "version", 0, "less than the minimum"),
        ("JobQueued", "position", None, "is not of type 'integer'"),
        ("JobQueued", "hash", "abc", "does not match"),
        ("JobQueued", "job_id", "job-1", "does not match"),
        ("JobQueued", "metadata/actor", ..., "'actor' is a required property"),
    ],
)
def test_the_schema_refuses_what_breaks_the_contract(
    type_name: str, path: str, value: Any, complaint: str
) -> None:
    problems = violations(broken(type_name, path, value))
    assert any(complaint in p for p in problems), problems


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    schema = validator().schema
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {f"{name}Data" for name in EVENT_TYPES} <= set(schema["$defs"])


def test_the_suite_wide_check_sees_what_the_store_appends(tmp_path: Any) -> None:
    """Guards the hook in tests/event_contract.py: an append goes through the check."""
    trail = connect(f"sqlite:///{tmp_path / 'contract.db'}")
    trail.init_db()
    job_id = trail.submit("video", {"shot": 1})
    trail.cancel(job_id, None, USER)
    events: list[Event] = trail.history(job_id)
    trail.close()
    assert {e.event_id for e in events} <= RECORDER.event_ids
