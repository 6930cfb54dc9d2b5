"""Which records a consumer has already handled: the highest version per job, in a window.

`JobEventConsumer` (the poll loop, commits, dead letters) asks the window about each
decoded event before handing it on:

- **Duplicates are dropped.** A relay re-sends after a crash, so a record whose version is
  not above the highest version already handled for its job is a duplicate. The highest
  version per job is kept in memory for the `capacity` most recently seen jobs (an LRU).
  After a restart the window is empty: offsets committed by the group mean Kafka itself
  re-delivers nothing that was handled, and a relay's re-sends are dropped only for the
  jobs still in the window.
- **Gaps are reported, not hidden.** A version more than one above the last handled one of
  the same job is a gap (`Gap`, logged by `warn_gap` unless the consumer is given another
  reporter); the event is still handed on. A job first seen at a version above 1 is not a
  gap: the consumer may have started in the middle of its history.
- **Broken chains are reported too.** Beside the last version the window keeps that event's
  `hash`: the next version's `prev_hash` must equal it, and a version 1's `prev_hash` must
  be empty (`ChainBreak`, logged by `warn_chain_break`; the event is still handed on). Only
  links the window saw both ends of are checked: after a gap, for a job first seen above
  version 1, or one forgotten by the LRU, the chain goes on from the next event handled.
  The check compares the stored hashes and recomputes none, so events hashed by either
  canonical form chain alike and an intact topic never reports a break.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 10_000
"""Jobs whose highest version and its hash are remembered: about 350 bytes a job with its id
and hash strings (about 230 without chain checks), measured with tracemalloc."""

GENESIS_HASH = ""
"""The `prev_hash` of a job's version 1 (as `jobtrail.domain.canonical.GENESIS_HASH`)."""


class Verdict(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    GAP = "gap"
    CHAIN_BREAK = "chain_break"
    """The next version, or a version 1, whose `prev_hash` is not the hash it must be."""


class VersionWindow:
    """The highest handled version, and its event's hash, of the `capacity` most recently
    seen jobs (an LRU)."""

    def __init__(self, capacity: int = DEFAULT_WINDOW) -> None:
        if capacity < 1:
            raise ValueError(f"the dedupe window needs at least 1 job, not {capacity}")
        self.capacity = capacity
        self._last: OrderedDict[str, tuple[int, str]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._last)

    def last(self, job_id: str) -> int | None:
        """The highest version handled for the job, if the window remembers it."""
        last = self._last.get(job_id)
        return None if last is None else last[0]

    def last_hash(self, job_id: str) -> str | None:
        """The hash of that event ("" when it was accepted without one)."""
        last = self._last.get(job_id)
        return None if last is None else last[1]

    def expected_prev_hash(self, job_id: str, version: int) -> str | None:
        """What `prev_hash` `version` of the job must carry, when the window can tell."""
        if version == 1:
            return GENESIS_HASH
        last = self._last.get(job_id)
        if last is None or last[0] != version - 1 or not last[1]:
            return None  # first seen mid-history, after a gap, or accepted without a hash
        return last[1]

    def check(self, job_id: str, version: int, prev_hash: str | None = None) -> Verdict:
        """What the event is to this window; its chain link is checked when `prev_hash` is
        given (a duplicate or a gap is reported as such, never as a chain break)."""
        last = self._last.get(job_id)
        if last is not None:
            if version <= last[0]:
                return Verdict.DUPLICATE
            if version > last[0] + 1:
                return Verdict.GAP
        if prev_hash is not None:
            expected = self.expected_prev_hash(job_id, version)
            if expected is not None and prev_hash != expected:
                return Verdict.CHAIN_BREAK
        return Verdict.NEW

    def accept(self, job_id: str, version: int, hash: str = "") -> None:
        """Remember that `version` of the job (whose hash is `hash`) was handled; forget the
        least recent job beyond the capacity."""
        self._last[job_id] = (version, hash)
        self._last.move_to_end(job_id)
        if len(self._last) > self.capacity:
            self._last.popitem(last=False)


@dataclass(frozen=True)
class Gap:
    """Versions of a job that never arrived: `expected` was due, `received` came."""

    job_id: str
    expected: int
    received: int
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class ChainBreak:
    """`version` of a job whose `prev_hash` (`received`) is not the hash of the job's
    previous event as handled (`expected`; "" for a version 1): an event was altered,
    replaced or forged, on the topic or before it."""

    job_id: str
    version: int
    expected: str
    received: str
    topic: str
    partition: int
    offset: int


def warn_gap(gap: Gap) -> None:
    log.warning(
        "gap in job %s: expected version %d, received %d (%s[%d]@%d)",
        gap.job_id,
        gap.expected,
        gap.received,
        gap.topic,
        gap.partition,
        gap.offset,
    )


def warn_chain_break(brk: ChainBreak) -> None:
    log.warning(
        "broken chain in job %s at version %d: prev_hash %s, but the previous event's hash "
        "is %s (%s[%d]@%d)",
        brk.job_id,
        brk.version,
        brk.received or '""',
        brk.expected or '""',
        brk.topic,
        brk.partition,
        brk.offset,
    )
