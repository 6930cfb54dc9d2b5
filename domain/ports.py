"""The small interfaces the domain's services need from the outside world."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from jobtrail.domain.errors import InvalidCommand
from jobtrail.domain.events import Event
from jobtrail.domain.job import Job, Outcome


class Append(NamedTuple):
    """One job's new events, to be written after ``expected_version``."""

    events: Sequence[Event]
    expected_version: int

    def check(self) -> None:
        """The port's rule for every store: one job's next events, in version order."""
        first = self.expected_version + 1
        if {e.job_id for e in self.events} != {self.events[0].job_id} or [
            e.version for e in self.events
        ] != list(range(first, first + len(self.events))):
            raise InvalidCommand(reason="an append takes one job's next events, in version order")


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

    def load_many(self, job_ids: Collection[str]) -> dict[str, list[Event]]:
        """Several jobs' events, by job id (unknown jobs are left out)."""
        found = {job_id: self.load(job_id) for job_id in job_ids}
        return {job_id: events for job_id, events in found.items() if events}

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


class Lease(NamedTuple):
    """A worker's hold on one attempt of a job."""

    job_id: str
    attempt: int


class JobQueue(abc.ABC):
    """How workers find work and keep it: claims, lease renewals, expired leases.

    Leases are coordination, not facts: renewing one writes no event. A lease is created
    when a `JobStarted` is appended and removed when the job leaves ``processing``.
    """

    @abc.abstractmethod
    def claim(
        self,
        limit: int,
        job_types: Collection[str] | None,
        command: Callable[[Job], Outcome],
        also_append: Sequence[Append] = (),
        queues: Collection[str] | None = None,
    ) -> list[Job]:
        """Lock up to ``limit`` available queued jobs, run ``command`` on each, append.

        Only jobs of ``job_types`` in ``queues`` (None: any) that are not paused are taken,
        and no more of a limited type (or key) than its concurrency limit lets run. Jobs
        are taken by priority (highest first), then by ``available_at``; jobs other
        claimers hold are skipped, not waited for. ``also_append`` (a worker's finished
        jobs) is written in the same transaction, so a busy worker pays one commit per
        turn. Returns the jobs the command recorded something on, with their new state.
        Raises `ConcurrencyConflict` if ``also_append`` is stale; then nothing is written.
        """

    @abc.abstractmethod
    def renew(self, worker_id: str, leases: Collection[Lease], until: datetime) -> set[str]:
        """Extend the worker's leases; returns the ids of the jobs it still holds."""

    @abc.abstractmethod
    def next_available_at(
        self, job_types: Collection[str] | None, queues: Collection[str] | None = None
    ) -> datetime | None:
        """When the earliest queued job (of these types and queues, not paused) becomes
        available, if any."""

    @abc.abstractmethod
    def expired(self, now: datetime, limit: int = 100) -> list[Lease]:
        """Leases that ran out before ``now``: their worker died or hung."""

    def holding(self) -> contextlib.AbstractContextManager[None]:
        """While inside, this thread's calls may keep one connection between them (a
        worker's main loop): checked when taken, and replaced after any error."""
        return contextlib.nullcontext()


class Clock(abc.ABC):
    @abc.abstractmethod
    def now(self) -> datetime:
        """The current time, timezone-aware."""


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)
