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
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 10_000
"""Jobs whose highest version is remembered (about 150 bytes each)."""


class Verdict(Enum):
    NEW = "new"
    DUPLICATE = "duplicate"
    GAP = "gap"


class VersionWindow:
    """The highest handled version of the `capacity` most recently seen jobs (an LRU)."""

    def __init__(self, capacity: int = DEFAULT_WINDOW) -> None:
        if capacity < 1:
            raise ValueError(f"the dedupe window needs at least 1 job, not {capacity}")
        self.capacity = capacity
        self._last: OrderedDict[str, int] = OrderedDict()

    def __len__(self) -> int:
        return len(self._last)

    def last(self, job_id: str) -> int | None:
        return self._last.get(job_id)

    def check(self, job_id: str, version: int) -> Verdict:
        last = self._last.get(job_id)
        if last is None:
            return Verdict.NEW
        if version <= last:
            return Verdict.DUPLICATE
        return Verdict.GAP if version > last + 1 else Verdict.NEW

    def accept(self, job_id: str, version: int) -> None:
        """Remember that `version` of the job was handled; forget the least recent job."""
        self._last[job_id] = version
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
