"""The wire format of the `job-events` topic: one Kafka record per event.

key = job id (UTF-8), so all of a job's events land on one partition in version order;
value = the event's JSON envelope (`Event.envelope()`), UTF-8; headers repeat the type, the
schema version and the event id so consumers can route or drop records without parsing.
The relay encodes with `encode`; consumers and replay decode with `decode`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

from domain.errors import UndecodableMessage
from domain.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    Event,
    UnknownEventType,
    event_from_record,
    parse_time,
    utc_iso,
)

HEADER_TYPE = "event_type"
HEADER_SCHEMA_VERSION = "schema_version"
HEADER_EVENT_ID = "event_id"

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


@dataclass(frozen=True)
class Record:
    """What the producer sends for one event."""

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
    return encode_fields(
        event.position,
        event.event_id,
        event.job_id,
        event.version,
        event.type,
        event.schema_version,
        utc_iso(event.occurred_at),
        _dumps(event.data()),
        _dumps(event.metadata()),
        event.prev_hash,
        event.hash,
    )


def encode_fields(
    position: int | None,
    event_id: str,
    job_id: str,
    version: int,
    type: str,
    schema_version: int,
    occurred_at: str,
    data_json: str,
    metadata_json: str,
    prev_hash: str,
    hash: str,
) -> Record:
    """The record of an event given as the log stores it: data and metadata as JSON text.

    The relay reads events this way, so that publishing never parses and re-serialises
    their data; `encode` goes through here too, so there is one layout of the envelope.
    The fields are in `Event.envelope()`'s order.
    """
    value = (
        f'{{"position":{"null" if position is None else int(position)},'
        f'"event_id":{_quote(event_id)},"job_id":{_quote(job_id)},"version":{int(version)},'
        f'"type":{_quote(type)},"schema_version":{int(schema_version)},'
        f'"occurred_at":{_quote(occurred_at)},"data":{data_json},"metadata":{metadata_json},'
        f'"prev_hash":{_quote(prev_hash)},"hash":{_quote(hash)}}}'
    )
    return Record(
        key=job_id.encode(),
        value=value.encode(),
        headers=[
            (HEADER_TYPE, type.encode()),
            (HEADER_SCHEMA_VERSION, str(schema_version).encode()),
            (HEADER_EVENT_ID, event_id.encode()),
        ],
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_quote: Callable[[str], str] = encode_basestring
"""A JSON string literal (the C encoder json.dumps uses for strings)."""


def decode(value: bytes | None) -> Event | RawEvent:
    """The typed event in a record's value; `RawEvent` when it is newer than this code.

    Raises `UndecodableMessage` when the value is not an envelope at all.
    """
    envelope = _envelope(value)
    if envelope["schema_version"] > SCHEMA_VERSION or envelope["type"] not in EVENT_TYPES:
        return _raw(envelope)
    try:
        return event_from_record(
            type=envelope["type"],
            data=envelope["data"],
            metadata=envelope.get("metadata") or {},
            job_id=envelope["job_id"],
            version=envelope["version"],
            event_id=envelope["event_id"],
            occurred_at=parse_time(envelope["occurred_at"]),
            prev_hash=envelope["prev_hash"],
            hash=envelope["hash"],
            position=envelope.get("position"),
        )
    except UnknownEventType:
        return _raw(envelope)
    except (TypeError, ValueError) as error:
        raise UndecodableMessage(reason=f"bad {envelope['type']} data: {error}") from error


def _envelope(value: bytes | None) -> dict[str, Any]:
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
