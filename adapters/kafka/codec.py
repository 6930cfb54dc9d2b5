"""The wire format of the `job-events` topic: one Kafka record per event.

key = job id (UTF-8), so all of a job's events land on one partition in version order;
value = the event's JSON envelope (`Event.envelope()`), UTF-8; headers repeat the type, the
schema version and the event id so consumers can route or drop records without parsing, and
the W3C ``traceparent`` of the job's trace when it has one (the header tracing libraries read).
`encode` builds the record of an `Event` (the relay's records are built by the database in
the same layout, see `relay_source`); consumers and replay decode with `decode`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NamedTuple

from jobtrail.adapters.kafka.errors import UndecodableMessage
from jobtrail.domain.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    Event,
    UnknownEventType,
    event_from_envelope,
)

HEADER_TYPE = "event_type"
HEADER_SCHEMA_VERSION = "schema_version"
HEADER_EVENT_ID = "event_id"
HEADER_TRACEPARENT = "traceparent"

_REQUIRED = {
    "event_id": str,
    "job_id": str,
    "version": int,
    "type": str,
    "schema_version": int,
    "occurred_at": str,
    "data": dict,
    "prev_hash": str,
    "hash": str,
}


class Record(NamedTuple):
    """What the producer sends for one event (a tuple: the relay makes one per event)."""

    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class RawEvent:
    """An envelope this version cannot type (a newer schema, or an event type it does not know).

    Passed on to handlers untouched rather than dropped or crashed on: a newer relay may
    publish events an older consumer has never heard of.
    """

    job_id: str
    version: int
    type: str
    schema_version: int
    envelope: dict[str, Any]


def encode(event: Event) -> Record:
    return record(
        event.job_id.encode(),
        event.type.encode(),
        str(event.schema_version).encode(),
        event.event_id.encode(),
        _dumps(event.envelope()).encode(),
        None if event.traceparent is None else event.traceparent.encode(),
    )


def record(
    key: bytes,
    type: bytes,
    schema_version: bytes,
    event_id: bytes,
    value: bytes,
    traceparent: bytes | None = None,
) -> Record:
    """The record of an event given as UTF-8 parts: the job id, the header values, and
    the envelope. The relay reads them so from the database (`relay_source`). The
    ``traceparent`` header is there only when the event's metadata has one."""
    headers = [
        (HEADER_TYPE, type),
        (HEADER_SCHEMA_VERSION, schema_version),
        (HEADER_EVENT_ID, event_id),
    ]
    if traceparent is not None:
        headers.append((HEADER_TRACEPARENT, traceparent))
    return Record(key, value, headers)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def decode(value: bytes | None) -> Event | RawEvent:
    """The typed event in a record's value; `RawEvent` when it is newer than this code.

    Raises `UndecodableMessage` when the value is not an envelope at all.
    """
    envelope = read_envelope(value)
    if envelope["schema_version"] > SCHEMA_VERSION or envelope["type"] not in EVENT_TYPES:
        return _raw(envelope)
    try:
        return event_from_envelope(envelope)
    except UnknownEventType:
        return _raw(envelope)
    except (TypeError, ValueError) as error:
        raise UndecodableMessage(reason=f"bad {envelope['type']} data: {error}") from error


def read_envelope(value: bytes | None) -> dict[str, Any]:
    """The record's envelope as JSON, its required fields checked; `UndecodableMessage` if not."""
    if value is None:
        raise UndecodableMessage(reason="the record has no value")
    try:
        envelope = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UndecodableMessage(reason=f"not JSON ({error})") from error
    if not isinstance(envelope, dict):
        raise UndecodableMessage(reason="not a JSON object")
    for name, kind in _REQUIRED.items():
        field = envelope.get(name)
        if not isinstance(field, kind) or isinstance(field, bool):
            raise UndecodableMessage(reason=f"field {name!r} is missing or not a {kind.__name__}")
    return envelope


def _raw(envelope: dict[str, Any]) -> RawEvent:
    return RawEvent(
        job_id=envelope["job_id"],
        version=envelope["version"],
        type=envelope["type"],
        schema_version=envelope["schema_version"],
        envelope=envelope,
    )
