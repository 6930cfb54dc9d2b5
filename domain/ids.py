"""Job and event ids are UUIDs; anything else is refused before it reaches storage.

New ids are time-ordered (RFC 9562 version 7: 48 bits of Unix milliseconds, then 74 random
bits). Every index keyed by an id (the job table's key, the log's ``(job_id, version)`` and
``event_id``) then grows at its right edge, as a sequence would, instead of writing each new
entry to a random page of an index that, at millions of jobs, no longer fits in memory:
docs/scale.md measured worker throughput at 10M events going from 0.66× to 0.98× of an
empty database. An id tells roughly when it was made; it was already in the event anyway.
"""

from __future__ import annotations

import os
import time
import uuid

from jobtrail.domain.errors import InvalidJobId


def parse_job_id(text: str) -> str:
    """The canonical form of a job id, or `InvalidJobId`."""
    try:
        return str(uuid.UUID(text.strip()))
    except (ValueError, AttributeError):
        raise InvalidJobId(job_id=text) from None


def time_ordered_id() -> str:
    """A new time-ordered UUID (version 7), as text."""
    random = int.from_bytes(os.urandom(10), "big")
    millis = time.time_ns() // 1_000_000
    value = millis << 80 | 0x7 << 76 | (random >> 62 & 0xFFF) << 64
    return str(uuid.UUID(int=value | 0b10 << 62 | random & ((1 << 62) - 1)))
