"""A published envelope (a line of an export, a record of the topic) as a `StoredEvent`.

Kept untyped on purpose: the codec checks the envelope's fields, which are then taken as
they are (not re-encoded from a typed event), so that the hash is checked against exactly
what was published, and data a typed event cannot be built from is replay's `bad_data`,
naming job and version, rather than a line that cannot be read.
"""

from __future__ import annotations

from jobtrail.adapters.audit.checks.records import StoredEvent
from jobtrail.adapters.kafka.codec import read_envelope
from jobtrail.adapters.kafka.errors import UndecodableMessage
from jobtrail.domain.canonical import parse_time


def stored_event(value: bytes | None) -> StoredEvent:
    """The stored form of one published envelope; `UndecodableMessage` for anything else."""
    envelope = read_envelope(value)
    position = envelope.get("position")
    if not isinstance(position, int):
        raise UndecodableMessage(
            reason=f"event {envelope['job_id']} v{envelope['version']} has no position"
        )
    return StoredEvent(
        position=position,
        event_id=envelope["event_id"],
        job_id=envelope["job_id"],
        version=envelope["version"],
        type=envelope["type"],
        schema_version=envelope["schema_version"],
        data=envelope["data"],
        metadata=envelope.get("metadata") or {},
        occurred_at=parse_time(envelope["occurred_at"]),
        prev_hash=envelope["prev_hash"],
        hash=envelope["hash"],
    )
