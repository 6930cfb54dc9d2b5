"""The published event contract (adapters/kafka/schemas/job-event.schema.json), type by type.

tests/event_contract.py checks every event the suite appends; this file covers each type on
purpose, with the edge cases a consumer must accept, and shows the schema refuses what it
should (so it is not a schema that accepts anything).
"""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from jobtrail.adapters.bootstrap import connect
from jobtrail.domain.errors import InsufficientCredits, RateLimited, UnknownJobType, UpstreamTimeout
from jobtrail.domain.events import EVENT_TYPES, Event
from jobtrail.domain.job import Job, Meta
from jsonschema import Draft202012Validator

from tests.event_contract import RECORDER, SCHEMA_PATH, violations
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
        ("JobQueued", "metadata/hash_form", "sha1", "'jcs' was expected"),
        ("JobQueued", "metadata/surprise", 1, "Additional properties are not allowed"),
        ("JobQueued", "prev_hash", "0" * 63, "does not match"),
        ("JobStarted", "data/attempt", 0, "less than the minimum of 1"),
        ("JobRetryScheduled", "data/attempt", 0, "less than the minimum of 1"),
        ("JobRetryScheduled", "data/delay_seconds", -1, "less than the minimum of 0"),
        ("JobFailed", "data/attempt", -1, "less than the minimum of 0"),
        ("JobCompleted", "data/duration_ms", "12", "is not of type 'number'"),
        ("JobCancelled", "data", ..., "'data' is a required property"),
    ],
)
def test_the_schema_refuses_what_breaks_the_contract(
    type_name: str, path: str, value: Any, complaint: str
) -> None:
    problems = violations(broken(type_name, path, value))
    assert any(complaint in p for p in problems), problems


def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    return loaded


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    published = schema()
    Draft202012Validator.check_schema(published)
    assert published["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert {*EVENT_TYPES, *(f"{name}Data" for name in EVENT_TYPES)} <= set(published["$defs"])
    assert published["$defs"]["EventType"]["enum"] == list(EVENT_TYPES)


def test_an_event_hashed_before_jcs_has_no_hash_form_and_keeps_the_contract() -> None:
    envelope = broken("JobQueued", "metadata/hash_form", ...)
    assert violations(envelope) == []


def test_each_types_own_schema_takes_its_events_and_no_other_types() -> None:
    defs = schema()["$defs"]
    for name in EVENT_TYPES:
        own = Draft202012Validator({"$defs": defs, "$ref": f"#/$defs/{name}"})
        for other in EVENT_TYPES:
            accepted = own.is_valid(sample(other))
            assert accepted is (other == name), (name, other)


def test_the_description_tells_consumers_what_the_schema_refuses() -> None:
    """The schema refuses other types and versions (above); its advice says so."""
    description = schema()["description"]
    for words in ("`event_type` and `schema_version` headers", "validates only an event it knows"):
        assert words in description


# Keywords that apply to one JSON type: ajv's strict mode (strictTypes) wants that type
# declared beside them. This mirrors it for machines without the Node.js verifier.
TYPE_KEYWORDS = {
    "object": {"properties", "required", "additionalProperties", "patternProperties"},
    "string": {"pattern", "minLength", "maxLength", "format"},
    "number": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"},
}


def schema_nodes(node: Any, path: str = "#") -> list[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        found = [(path, node)] if not path.endswith("/properties") else []
        return found + [n for k, v in node.items() for n in schema_nodes(v, f"{path}/{k}")]
    if isinstance(node, list):
        return [n for i, v in enumerate(node) for n in schema_nodes(v, f"{path}/{i}")]
    return []


def test_every_keyword_that_applies_to_one_type_has_that_type_declared() -> None:
    for path, node in schema_nodes(schema()):
        declared = node.get("type", [])
        types = {declared} if isinstance(declared, str) else set(declared)
        if "integer" in types:
            types.add("number")
        for kind, keywords in TYPE_KEYWORDS.items():
            used = keywords & set(node)
            assert not used or kind in types, f"{path}: {sorted(used)} without type {kind!r}"


def test_the_suite_wide_check_sees_what_the_store_appends(tmp_path: Any) -> None:
    """Guards the hook in tests/event_contract.py: an append goes through the check."""
    trail = connect(f"sqlite:///{tmp_path / 'contract.db'}")
    trail.init_db()
    job_id = trail.submit("video", {"shot": 1})
    trail.cancel(job_id, None, USER)
    events: list[Event] = trail.history(job_id)
    trail.close()
    assert {e.event_id for e in events} <= RECORDER.event_ids
