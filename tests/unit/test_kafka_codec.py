"""The topic's wire format: every event survives encode → decode; anything else is refused."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from jobtrail.adapters.kafka.codec import RawEvent, decode, encode
from jobtrail.adapters.kafka.errors import UndecodableMessage
from jobtrail.domain.events import SCHEMA_VERSION, Event

from tests.unit.histories import ALL_HISTORIES


def every_event() -> list[Event]:
    return [event for build in ALL_HISTORIES.values() for event in build().pending]


@pytest.mark.parametrize("event", every_event(), ids=lambda e: f"{e.job_id}-v{e.version}")
def test_an_event_decodes_to_itself(event: Event) -> None:
    event = replace(event, position=event.version + 100)
    record = encode(event)
    assert decode(record.value) == event
    assert record.key == event.job_id.encode()
    assert dict(record.headers) == {
        "event_type": event.type.encode(),
        "schema_version": str(SCHEMA_VERSION).encode(),
        "event_id": event.event_id.encode(),
    }


def test_the_decoded_event_still_verifies_its_hash() -> None:
    for event in every_event():
        assert decode(encode(event).value).compute_hash() == event.hash  # type: ignore[union-attr]


def envelope_of(event: Event, **changes: object) -> bytes:
    envelope = {**event.envelope(), **changes}
    return json.dumps(envelope).encode()


def test_a_newer_schema_version_is_passed_on_raw() -> None:
    event = every_event()[0]
    decoded = decode(envelope_of(event, schema_version=SCHEMA_VERSION + 1, data={"new": 1}))
    assert isinstance(decoded, RawEvent)
    assert (decoded.job_id, decoded.version) == (event.job_id, event.version)
    assert decoded.envelope["data"] == {"new": 1}


def test_an_unknown_event_type_is_passed_on_raw() -> None:
    decoded = decode(envelope_of(every_event()[0], type="JobArchived"))
    assert isinstance(decoded, RawEvent) and decoded.type == "JobArchived"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "no value"),
        (b"\xff\xfe", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"job_id": "x"}', "'event_id' is missing"),
    ],
)
def test_a_value_that_is_no_envelope_is_refused_with_the_reason(
    value: bytes | None, reason: str
) -> None:
    with pytest.raises(UndecodableMessage, match=reason):
        decode(value)


def test_a_version_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(UndecodableMessage, match="'version'"):
        decode(envelope_of(every_event()[0], version="2"))


def test_a_known_type_with_a_bad_timestamp_is_refused() -> None:
    with pytest.raises(UndecodableMessage, match="not a jobtrail event envelope"):
        decode(envelope_of(every_event()[0], occurred_at="yesterday"))


@pytest.mark.parametrize("event", every_event(), ids=lambda e: f"{e.job_id}-v{e.version}")
def test_the_value_is_the_event_s_envelope(event: Event) -> None:
    assert json.loads(encode(event).value) == event.envelope()


def test_text_that_needs_escaping_survives() -> None:
    event = every_event()[0]
    tricky = replace(event, actor='ops "night" \\ shift\n✓', job_id='job-"1"')
    assert json.loads(encode(tricky).value) == tricky.envelope()
