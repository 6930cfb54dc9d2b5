"""Job ids are UUIDs; anything else is refused before it reaches storage."""

from __future__ import annotations

import uuid

from jobtrail.domain.errors import InvalidJobId


def parse_job_id(text: str) -> str:
    """The canonical form of a job id, or `InvalidJobId`."""
    try:
        return str(uuid.UUID(text.strip()))
    except (ValueError, AttributeError):
        raise InvalidJobId(job_id=text) from None
