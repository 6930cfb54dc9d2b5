"""The `EventStore` port in memory: the unit tests' store, held to the same contract.

The contract suite (tests/contract/test_event_store.py) runs on it as on SQLite and
PostgreSQL (the `store` fixture of tests/conftest.py), the way eventsourcing runs its
persistence test cases on its in-memory recorder: a fake that passed unit tests while
breaking the contract would make those tests worthless.

It lives with the tests, not in the product: nothing in jobtrail would use it (`connect`
needs the queue and the `job` projection as well, and the embedded default, SQLite, already
needs no server), and its hooks exist to inject races into unit tests.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import replace

from jobtrail.domain.errors import ConcurrencyConflict, DuplicateIdempotencyKey
from jobtrail.domain.events import Event, JobQueued
from jobtrail.domain.job import Job, Outcome
from jobtrail.domain.ports import Append, EventStore


class InMemoryEventStore(EventStore):
    """Positions from 1 in append order; versions, idempotency keys and batches checked as
    the SQL store checks them. Hooks let unit tests inject races and conflicts."""

    def __init__(self) -> None:
        self.log: list[Event] = []
        self.keys: dict[str, str] = {}
        """Idempotency key -> the id of the job that holds it."""
        self._histories: dict[str, list[Event]] = {}
        self.batches = 0
        self.conflicts_to_inject = 0
        self.before_next_append: Callable[[], None] | None = None

    # ---------------------------------------------------------------- the port

    def append_batch(self, appends: Sequence[Append]) -> None:
        self.batches += 1
        if self.before_next_append is not None:
            hook, self.before_next_append = self.before_next_append, None
            hook()
        if self.conflicts_to_inject:
            self.conflicts_to_inject -= 1
            first = appends[0]
            raise ConcurrencyConflict(
                job_id=first.events[0].job_id, expected=first.expected_version
            )
        self.commit(appends)

    def load(self, job_id: str) -> list[Event]:
        return list(self._histories.get(job_id, ()))

    def read_after(self, position: int, limit: int = 1000) -> list[Event]:
        # positions are 1, 2, … in list order: the event at position p is log[p - 1]
        start = max(position, 0)
        return self.log[start : start + max(limit, 0)]

    # ------------------------------------------------------------ for the tests

    def commit(self, appends: Sequence[Append]) -> list[Event]:
        """All appends or none, checked in the SQL store's order: every append's shape,
        then the new jobs' ids and idempotency keys, then the others' versions."""
        appends = [a for a in appends if a.events]
        for item in appends:
            item.check()
        keys: dict[str, str] = {}
        versions: dict[str, int] = {}
        for events, expected_version in appends:
            job_id = events[0].job_id
            if expected_version == 0:
                if job_id in self._histories or job_id in versions:
                    raise ConcurrencyConflict(job_id=job_id, expected=0)
                key = events[0].idempotency_key if isinstance(events[0], JobQueued) else None
                if key is not None:
                    if key in self.keys or key in keys:
                        raise DuplicateIdempotencyKey(key=key)
                    keys[key] = job_id
            else:
                current = versions.get(job_id, len(self._histories.get(job_id, ())))
                if current != expected_version:
                    raise ConcurrencyConflict(job_id=job_id, expected=expected_version)
            versions[job_id] = events[-1].version
        positioned: list[Event] = []
        for item in appends:
            for event in item.events:
                positioned.append(replace(event, position=len(self.log) + len(positioned) + 1))
        for event in positioned:
            self.log.append(event)
            self._histories.setdefault(event.job_id, []).append(event)
        self.keys.update(keys)
        return positioned

    def find_keys(self, keys: Collection[str]) -> dict[str, str]:
        """`JobService.find_by_idempotency_keys` for this store."""
        return {key: self.keys[key] for key in keys if key in self.keys}

    def append_as_someone_else(self, job_id: str, command: Callable[[Job], Outcome]) -> None:
        """Another process loads the job, runs ``command`` and appends, bypassing the hooks."""
        job = Job.from_history(job_id, self.load(job_id))
        assert command(job) is Outcome.RECORDED
        self.commit([Append(job.pending, job.version - len(job.pending))])
