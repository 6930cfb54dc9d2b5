"""The records the checks read and the problems they report.

A `StoredEvent` is an envelope's fields as stored, exported or published, untyped: the
checks must see exactly what was written (a typed event could not carry a tampered
field), and decode it themselves.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from jobtrail.domain.canonical import covered_fields


class StoredEvent(NamedTuple):
    """One event as stored (or exported, or published): the envelope's fields, untyped."""

    position: int
    event_id: str
    job_id: str
    version: int
    type: str
    schema_version: int
    data: Any
    metadata: Any
    occurred_at: datetime
    prev_hash: str
    hash: str

    def envelope(self) -> dict[str, Any]:
        return {**self.covered(), "position": self.position, "hash": self.hash}

    def covered(self) -> dict[str, Any]:
        """The envelope without position and hash: what the hash covers."""
        return covered_fields(
            event_id=self.event_id,
            job_id=self.job_id,
            version=self.version,
            type=self.type,
            schema_version=self.schema_version,
            occurred_at=self.occurred_at,
            data=self.data,
            metadata=self.metadata,
            prev_hash=self.prev_hash,
        )


@dataclass(frozen=True)
class Problem:
    """Something wrong with the log; ``kind`` is a stable code, ``reason`` says it to a person."""

    kind: str
    reason: str
    job_id: str | None = None
    version: int | None = None
    position: int | None = None
    details: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {
            "kind": self.kind,
            "job_id": self.job_id,
            "version": self.version,
            "position": self.position,
            "reason": self.reason,
        }
        if self.details is not None:
            found["details"] = self.details
        return found


def group_by_job(records: Iterable[StoredEvent]) -> Iterator[list[StoredEvent]]:
    """Consecutive records of the same job (the stream is ordered by job, then version)."""
    for _, group in itertools.groupby(records, key=lambda r: r.job_id):
        yield list(group)
