"""Pure checks of a stored log, streamed: histories, seals, and the rebuilt `job` table.

Nothing here reads a database; adapters feed it records. Two passes, each over one sorted
stream, so memory does not grow with the log:

- in position order, `check_seals` folds every event into the running digest and compares
  it with each seal (catches deleted, inserted and reordered events);
- in ``(job_id, version)`` order, `verify_job` checks one job's history (versions, the one
  Machine, attempts, the hash chain, each hash recomputed from the stored envelope) and folds
  it into the row the projection would make, which `diff_rows` compares with the live row.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from jobtrail.domain import lifecycle
from jobtrail.domain.errors import IllegalTransition
from jobtrail.domain.events import (
    EVENT_TYPES,
    GENESIS_HASH,
    SCHEMA_VERSION,
    TERMINAL_EVENT_TYPES,
    Event,
    JobStarted,
    covered_fields,
    covered_hash,
    event_from_envelope,
)
from jobtrail.domain.seals import RunningDigest, Seal
from jobtrail.projections.job_table import COLUMNS, assignments, new_row


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


# ------------------------------------------------------------------------ seals


@dataclass
class SealCheck:
    """What the position-ordered pass found."""

    events: int = 0
    last_position: int = 0
    digest: str = ""
    seals: int = 0
    problems: list[Problem] = field(default_factory=list)


def check_seals(
    entries: Iterable[tuple[int, str]], seals: Sequence[Seal], start: Seal | None = None
) -> SealCheck:
    """Fold ``(position, hash)`` pairs, in position order, and compare every seal after ``start``.

    ``start`` (a seal taken as already verified) lets a replay begin part-way; without it
    the fold begins at the empty log. A seal is compared once every event up to its
    position has been folded in, so one whose last events were deleted is caught too.
    """
    running = RunningDigest.after(start)
    first = start.position if start else 0
    pending = sorted(
        (s for s in seals if s.position > first), key=lambda s: (s.position, s.seal_id)
    )
    check = SealCheck(seals=len(pending))
    good: Seal | None = start
    index = 0
    for position, event_hash in entries:
        while index < len(pending) and pending[index].position < position:
            good = _compare(pending[index], running, good, check.problems)
            index += 1
        running.add(position, event_hash)
    for seal in pending[index:]:
        good = _compare(seal, running, good, check.problems)
    check.events = running.count
    check.last_position = running.position
    check.digest = running.digest
    return check


def _compare(seal: Seal, running: RunningDigest, good: Seal | None, out: list[Problem]) -> Seal:
    if running.matches(seal):
        return seal
    since = f"position {good.position}" if good else "the start of the log"
    if running.count < seal.event_count:
        what = f"{seal.event_count - running.count} event(s) fewer: events were deleted"
    elif running.count > seal.event_count:
        what = f"{running.count - seal.event_count} event(s) more: events were inserted"
    else:
        what = "the same number of events but another digest: events were changed or reordered"
    out.append(
        Problem(
            "seal_mismatch",
            f"seal {seal.seal_id} (position {seal.position}, {seal.event_count} events): the log "
            f"up to position {seal.position} now has {what}, after {since}",
            position=seal.position,
            details={
                "seal_id": seal.seal_id,
                "sealed_events": seal.event_count,
                "events_now": running.count,
            },
        )
    )
    return good if good is not None else seal


# ------------------------------------------------------------------------ histories


@dataclass
class JobResult:
    """One job's verdict, and the row its events fold into (None when none could be read)."""

    job_id: str
    events: int
    duplicates: int
    problems: list[Problem]
    row: dict[str, Any] | None


def group_by_job(records: Iterable[StoredEvent]) -> Iterator[list[StoredEvent]]:
    """Consecutive records of the same job (the stream is ordered by job, then version)."""
    for _, group in itertools.groupby(records, key=lambda r: r.job_id):
        yield list(group)


def verify_job(records: Sequence[StoredEvent], as_of: datetime | None = None) -> JobResult:
    """Check one job's records (in version order) and fold them into its row.

    The row is what the projection makes of every event that can be read, as
    `jobtrail rebuild` would, tampered or not; with ``as_of`` only the events up to that
    moment (by ``occurred_at``, the prefix of the history) are folded.
    """
    check = _JobCheck(records[0].job_id, as_of)
    for record in records:
        check.step(record)
    return JobResult(check.job_id, check.events, check.duplicates, check.problems, check.row)


class _JobCheck:
    def __init__(self, job_id: str, as_of: datetime | None) -> None:
        self.job_id = job_id
        self.as_of = as_of
        self.previous: StoredEvent | None = None
        self.status = lifecycle.NEW
        self.terminal: StoredEvent | None = None
        self.attempt = 0
        self.events = 0
        self.duplicates = 0
        self.problems: list[Problem] = []
        self.row: dict[str, Any] | None = None
        self.folding = True

    def problem(
        self, kind: str, record: StoredEvent, reason: str, version: int | None = None
    ) -> None:
        """A problem at ``record`` (``version``: the one it is about, when that is missing)."""
        about = record.version if version is None else version
        self.problems.append(Problem(kind, reason, self.job_id, about, record.position))

    def step(self, record: StoredEvent) -> None:
        previous = self.previous
        if previous is not None and record.version == previous.version:
            self._duplicate(record, previous)
            return
        self.events += 1
        self._check_place(record, previous)
        if covered_hash(record.covered()) != record.hash:
            self.problem(
                "hash_mismatch",
                record,
                f"the hash of version {record.version} does not match its stored content "
                "(data, metadata, time, type or ids were changed)",
            )
        self.previous = record
        event = self._decode(record)
        if event is not None:
            self._check_lifecycle(record, event)
            self._fold(event)

    def _duplicate(self, record: StoredEvent, previous: StoredEvent) -> None:
        """The same version twice: a resend (Kafka) if identical, a forgery otherwise."""
        if (record.event_id, record.hash) == (previous.event_id, previous.hash):
            self.duplicates += 1
        else:
            self.problem(
                "duplicate_version",
                record,
                f"two different events claim version {record.version} "
                f"(positions {previous.position} and {record.position})",
            )

    def _check_place(self, record: StoredEvent, previous: StoredEvent | None) -> None:
        expected = previous.version + 1 if previous else 1
        if record.version != expected:
            missing = (
                f"version {expected}"
                if record.version == expected + 1
                else f"versions {expected}-{record.version - 1}"
            )
            self.problem(
                "version_gap",
                record,
                f"{missing} missing: version {record.version} follows "
                f"{previous.version if previous else 'nothing'}",
                version=expected,
            )
        elif record.prev_hash != (previous.hash if previous else GENESIS_HASH):
            self.problem(
                "chain_broken",
                record,
                f"prev_hash of version {record.version} is not the hash of version {expected - 1}",
            )
        if previous is not None and record.position <= previous.position:
            self.problem(
                "position_order",
                record,
                f"version {record.version} is at position {record.position}, not after "
                f"version {previous.version} at position {previous.position}",
            )

    def _decode(self, record: StoredEvent) -> Event | None:
        if record.type not in EVENT_TYPES or record.schema_version > SCHEMA_VERSION:
            self.problem(
                "unknown_type",
                record,
                f"event type {record.type!r} (schema {record.schema_version}) is not one this "
                "version of jobtrail can verify",
            )
            return None
        try:
            return event_from_envelope(record._asdict())
        except (TypeError, ValueError, AttributeError) as error:
            self.problem("bad_data", record, f"the data of {record.type} cannot be read: {error}")
            return None

    def _check_lifecycle(self, record: StoredEvent, event: Event) -> None:
        if self.terminal is not None:
            self.problem(
                "after_terminal",
                record,
                f"{record.type} at version {record.version} after the job ended with "
                f"{self.terminal.type} at version {self.terminal.version}",
            )
        else:
            try:
                self.status = lifecycle.next_status(self.status, event.trigger)
            except IllegalTransition as error:
                self.problem(
                    "illegal_transition",
                    record,
                    f"{record.type} at version {record.version}: the lifecycle has no "
                    f"'{event.trigger}' from {self.status} ({error})",
                )
        if record.type in TERMINAL_EVENT_TYPES and self.terminal is None:
            self.terminal = record
        self._check_attempt(record, event)

    def _check_attempt(self, record: StoredEvent, event: Event) -> None:
        attempt = getattr(event, "attempt", None)
        if attempt is None:
            return
        expected = self.attempt + 1 if isinstance(event, JobStarted) else self.attempt
        if attempt != expected:
            self.problem(
                "attempt_mismatch",
                record,
                f"{record.type} at version {record.version} says attempt {attempt}, "
                f"expected {expected}",
            )
        if isinstance(event, JobStarted):
            self.attempt = attempt

    def _fold(self, event: Event) -> None:
        if self.as_of is not None and (not self.folding or event.occurred_at > self.as_of):
            self.folding = False  # a job's state at a moment is a prefix of its history
            return
        if self.row is None:
            self.row = new_row()
        self.row.update(assignments(event))


# ------------------------------------------------------------------------ the job table


class LiveRow(NamedTuple):
    job_id: str
    row: dict[str, Any]


def diff_rows(
    shadow: Iterable[tuple[str, dict[str, Any] | None]],
    live: Iterable[LiveRow],
    show: Callable[[Any], Any],
) -> Iterator[Problem]:
    """Compare rebuilt rows with the live table, both in job id order (a merge join).

    ``show`` turns a column value into its JSON form for the report.
    """
    live_iter = iter(live)
    pending = next(live_iter, None)
    last = ""
    for job_id, row in shadow:
        if job_id < last:
            raise ValueError("job ids are not in byte order; the database needs C collation")
        last = job_id
        while pending is not None and pending.job_id < job_id:
            yield _extra(pending)
            pending = next(live_iter, None)
        if pending is not None and pending.job_id == job_id:
            if row is not None:
                yield from _row_differences(job_id, row, pending.row, show)
            pending = next(live_iter, None)
        elif row is not None:
            yield Problem(
                "row_missing",
                f"the live job table has no row for job {job_id}, which the log has "
                f"(up to version {row['version']})",
                job_id,
                row["version"],
            )
    while pending is not None:
        yield _extra(pending)
        pending = next(live_iter, None)


def _extra(live: LiveRow) -> Problem:
    version = live.row.get("version")
    return Problem(
        "row_without_events",
        f"the live job table has job {live.job_id} (version {version}) but the log has no "
        "events for it: its history was deleted",
        live.job_id,
        version,
    )


def _row_differences(
    job_id: str, rebuilt: dict[str, Any], live: dict[str, Any], show: Callable[[Any], Any]
) -> Iterator[Problem]:
    columns = [c for c in COLUMNS if rebuilt.get(c) != live.get(c)]
    if columns:
        yield Problem(
            "row_differs",
            f"the live row of job {job_id} differs from the rebuilt one in " + ", ".join(columns),
            job_id,
            live.get("version"),
            details={c: {"live": show(live.get(c)), "log": show(rebuilt.get(c))} for c in columns},
        )


# ------------------------------------------------------------------------ the report


@dataclass
class Report:
    """Counts and problems of a replay; the same log gives the same report."""

    source: str
    scope: dict[str, Any]
    max_problems: int = 10_000
    events: int = 0
    jobs: int = 0
    duplicates: int = 0
    rows_compared: int = 0
    notes: list[str] = field(default_factory=list)
    seals: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)

    def add(self, problems: Iterable[Problem]) -> None:
        for problem in problems:
            self.counts[problem.kind] += 1
            if len(self.problems) < self.max_problems:
                self.problems.append(problem)

    def add_job(self, result: JobResult) -> None:
        self.jobs += 1
        self.events += result.events
        self.duplicates += result.duplicates
        self.add(result.problems)

    def merge(self, part: Report) -> None:
        """Add the report of a part of the log that follows everything added so far.

        Each part lists its first problems and counts all of them, so parts merged in log
        order give the report one pass over the whole log would.
        """
        self.events += part.events
        self.jobs += part.jobs
        self.duplicates += part.duplicates
        self.rows_compared += part.rows_compared
        self.notes.extend(part.notes)
        self.seals = part.seals or self.seals
        self.counts.update(part.counts)
        room = max(self.max_problems - len(self.problems), 0)
        self.problems.extend(part.problems[:room])

    @property
    def problem_count(self) -> int:
        return sum(self.counts.values())

    @property
    def clean(self) -> bool:
        return self.problem_count == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "scope": self.scope,
            "clean": self.clean,
            "events": self.events,
            "jobs": self.jobs,
            "duplicates_skipped": self.duplicates,
            "rows_compared": self.rows_compared,
            "seals": self.seals,
            "notes": self.notes,
            "problem_count": self.problem_count,
            "problems_by_kind": dict(sorted(self.counts.items())),
            "problems_listed": len(self.problems),
            "problems": [p.as_dict() for p in self.problems],
        }
