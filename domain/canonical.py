"""The one text form of an event, and its hash: what the tamper-evident chain is built on.

An event's hash is the sha-256 of its canonical JSON: the envelope without position and
hash, keys sorted, no spaces, UTF-8 as is. The same two functions make the hash of a new
event (`jobtrail.domain.events.Event.new`) and re-check a stored one (replay hashes the
stored envelope as it is, so a field added to stored data is caught too). Times are written
one way only (`utc_iso`).

Standard library only, like the rest of `domain/`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = ""
"""The ``prev_hash`` of a job's first event."""

_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
"""What ``json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)`` builds
on every call, built once (replay hashes every event of the log)."""


def utc_iso(moment: datetime) -> str:
    """ISO 8601 in UTC with microseconds, the one text form of a time in the log."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def canonical_text(covered: dict[str, Any]) -> str:
    """The canonical JSON of what a hash covers."""
    return _CANONICAL.encode(covered)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def covered_fields(
    *,
    event_id: str,
    job_id: str,
    version: int,
    type: str,
    schema_version: int,
    occurred_at: datetime,
    data: Any,
    metadata: Any,
    prev_hash: str,
) -> dict[str, Any]:
    """What an event's hash covers: its envelope without position and hash.

    One definition for new events and for stored ones that replay re-checks.
    """
    return {
        "event_id": event_id,
        "job_id": job_id,
        "version": version,
        "type": type,
        "schema_version": schema_version,
        "occurred_at": utc_iso(occurred_at),
        "data": data,
        "metadata": metadata,
        "prev_hash": prev_hash,
    }


def covered_hash(covered: dict[str, Any]) -> str:
    """The hash of an envelope given without its position and hash.

    One definition for writing events (`Event.new`) and for auditing stored ones: replay
    hashes the stored envelope as it is, so a field added to stored data is caught too.
    """
    return sha256_hex(canonical_text(covered))
