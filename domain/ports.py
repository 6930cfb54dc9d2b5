"""The small interfaces the domain's services need from the outside world."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from domain.events import Event


class Append(NamedTuple):
    """One job's new events, to be written after ``expected_version``."""

    events: Sequence[Event]
    expected_version: int


class EventStore(abc.ABC):
    """The append-only log of job events.

    Implementations keep the `job` projection up to date in the same transaction as the
    append, and translate their driver's errors into jobtrail's own.
    """

    def append(self, events: Sequence[Event], expected_version: int) -> None:
        """Append one job's new events after ``expected_version``.

        Raises `ConcurrencyConflict` when the job is no longer at ``expected_version``,
        and `DuplicateIdempotencyKey` when a new job reuses a key.
        """
        self.append_batch([Append(events, expected_version)])

    @abc.abstractmethod
    def append_batch(self, appends: Sequence[Append]) -> None:
        """Several jobs' appends in one transaction: all of them, or none.

        Positions are assigned by the store; read them back with `load` or `read_after`.
        """

    @abc.abstractmethod
    def load(self, job_id: str) -> list[Event]:
        """One job's events in version order (empty for an unknown job)."""

    @abc.abstractmethod
    def read_after(self, position: int, limit: int = 1000) -> list[Event]:
        """Up to ``limit`` events with a position greater than ``position``, in order.

        Never skips an event: a reader that saw position P will see every event with a
        position below P that is ever committed.
        """

    def read_all(self, batch: int = 1000) -> Iterator[Event]:
        """Every event in position order, one batch at a time."""
        position = 0
        while events := self.read_after(position, batch):
            yield from events
            position = events[-1].position or position


class Clock(abc.ABC):
    @abc.abstractmethod
    def now(self) -> datetime:
        """The current time, timezone-aware."""


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)
