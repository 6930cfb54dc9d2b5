"""The running digest of the whole log that seals record.

Per-job hash chains catch an event changed in place, but not a job's whole history
deleted, the log cut short, or two events' positions swapped: every chain that is left
still verifies. A seal records, at a position P, how many events the log holds up to P and
a digest folded over all of them in position order:

    digest_0 = ""                 (the empty log)
    digest_n = sha256(digest_{n-1} | position_n | hash_n)

Each event's hash already covers its content, job and version (and the per-job check
recomputes it), so folding in the position and the hash binds every event to its place in
the whole log: deleting, inserting, reordering or renumbering anything up to P changes the
count or the digest a replay recomputes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

EMPTY_DIGEST = ""
"""The digest of a log with no events."""


def next_digest(digest: str, position: int, event_hash: str) -> str:
    """The digest after one more event (the events are folded in position order)."""
    return hashlib.sha256(f"{digest}|{position}|{event_hash}".encode()).hexdigest()


@dataclass(frozen=True)
class Seal:
    """A checkpoint: up to ``position`` the log held ``event_count`` events and ``digest``."""

    seal_id: int
    position: int
    event_count: int
    digest: str


@dataclass
class RunningDigest:
    """Folds events in position order into (count, digest)."""

    count: int = 0
    digest: str = EMPTY_DIGEST
    position: int = 0

    @classmethod
    def after(cls, seal: Seal | None) -> RunningDigest:
        """Continue from a seal (taken as given), or from the empty log."""
        if seal is None:
            return cls()
        return cls(seal.event_count, seal.digest, seal.position)

    def add(self, position: int, event_hash: str) -> None:
        self.count += 1
        self.digest = next_digest(self.digest, position, event_hash)
        self.position = position

    def matches(self, seal: Seal) -> bool:
        return (self.count, self.digest) == (seal.event_count, seal.digest)


@dataclass(frozen=True)
class ArchiveRecord:
    """What `jobtrail archive` recorded before it removed anything from the log.

    ``event_count`` events of ``job_count`` whole finished histories, at positions
    ``first_position`` to ``last_position``, folded into ``events_digest``, went to the file
    ``file_name`` (``file_bytes`` bytes, sha256 ``file_digest``). The archive was cut at seal
    ``seal_id``; what it left of the log up to that seal's position folds into
    ``kept_count`` events and ``kept_digest`` (checked by a replay without the files).
    """

    archive_id: int
    seal_id: int
    seal_position: int
    file_name: str
    file_digest: str
    file_bytes: int
    event_count: int
    job_count: int
    first_position: int
    last_position: int
    events_digest: str
    kept_count: int
    kept_digest: str
