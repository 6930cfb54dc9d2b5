"""The job-ordered pass: one job's history checked, and folded into its `job` row.

Checked per event: its place (version after version, no gap, the chain of hashes, positions
increasing), its own hash recomputed from the stored envelope by the rule its metadata names
(RFC 8785, or the previous release's for an event without ``hash_form``: see `legacy`), its
type known, its data readable, its transition one the lifecycle allows, and its attempt. The
same version twice is a Kafka resend when identical, a forgery otherwise.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobtrail.adapters.audit.checks.legacy import Restoration, restore
from jobtrail.adapters.audit.checks.records import Problem, StoredEvent
from jobtrail.domain import lifecycle
from jobtrail.domain.canonical import (
    GENESIS_HASH,
    UnknownHashForm,
    jcs_envelope_text,
    legacy_text,
    metadata_hash_form,
    sha256_hex,
    utc_iso,
)
from jobtrail.domain.errors import IllegalTransition
from jobtrail.domain.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    TERMINAL_EVENT_TYPES,
    Event,
    JobStarted,
    event_from_envelope,
)
from jobtrail.projections.job_table import assignments, new_row


@dataclass
class JobResult:
    """One job's verdict, and the row its events fold into (None when none could be read)."""

    job_id: str
    events: int
    duplicates: int
    problems: list[Problem]
    row: dict[str, Any] | None
    hash_forms: Counter[str] = field(default_factory=Counter)
    """Events by the rule their hash was checked by: ``jcs``, ``legacy``, and
    ``legacy_restored`` (legacy events verified once PostgreSQL's number rewrites were
    undone; counted in ``legacy`` too)."""


def verify_job(records: Sequence[StoredEvent], as_of: datetime | None = None) -> JobResult:
    """Check one job's records (in version order) and fold them into its row.

    The row is what the projection makes of every event that can be read, as
    `jobtrail rebuild` would, tampered or not; with ``as_of`` only the events up to that
    moment (by ``occurred_at``, the prefix of the history) are folded.
    """
    check = _JobCheck(records[0].job_id, as_of)
    for record in records:
        check.step(record)
    return JobResult(
        check.job_id, check.events, check.duplicates, check.problems, check.row, check.forms
    )


class _JobCheck:
    """The state of one job's check between two of its events."""

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
        self.forms: Counter[str] = Counter()

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
        self._check_hash(record)
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

    def _check_hash(self, record: StoredEvent) -> None:
        """The hash recomputed from the stored envelope, by the rule its metadata names."""
        try:
            form = metadata_hash_form(record.metadata)
        except UnknownHashForm as unknown:
            self.problem(
                "unknown_hash_form",
                record,
                f"version {record.version} says its hash follows the rule {unknown}, which "
                "this version of jobtrail does not know; its chain links were checked",
            )
            return
        self.forms["jcs" if form else "legacy"] += 1
        try:
            text = _jcs_text(record) if form else legacy_text(record.covered())
            matches = sha256_hex(text) == record.hash
        except (TypeError, ValueError) as error:  # NaN, a lone surrogate: not by JCS's rules
            self.problem(
                "hash_mismatch",
                record,
                f"the content of version {record.version} cannot be canonicalized ({error}), "
                "so it is not what was hashed",
            )
            return
        if matches:
            return
        if form is None:
            self._check_legacy_hash(record, record.covered())
            return
        self.problem(
            "hash_mismatch",
            record,
            f"the hash of version {record.version} does not match its stored content "
            "(data, metadata, time, type or ids were changed)",
        )

    def _check_legacy_hash(self, record: StoredEvent, covered: dict[str, Any]) -> None:
        """A legacy event whose text differs: numbers a store rewrote, or a change."""
        found, count = restore(covered, record.hash)
        if found is Restoration.RESTORED:
            self.forms["legacy_restored"] += 1
        elif found is Restoration.TOO_MANY:
            self.problem(
                "legacy_hash_unverifiable",
                record,
                f"version {record.version} was hashed before RFC 8785 by the legacy rule and "
                f"{count} of its numbers may have been rewritten by the store (PostgreSQL's "
                "jsonb gives floats such as 1e16 back as integers, -0.0 as 0.0), too many to "
                "try every combination, so the hash cannot be recomputed exactly; its chain "
                "links were checked, its content is not verified",
            )
        else:
            restored = (
                f", even with the {count} number(s) a store may have rewritten put back"
                if count
                else ""
            )
            self.problem(
                "hash_mismatch",
                record,
                f"the hash of version {record.version} (legacy rule) does not match its "
                f"stored content{restored} (data, metadata, time, type or ids were changed)",
            )

    def _check_place(self, record: StoredEvent, previous: StoredEvent | None) -> None:
        """Version, chain and position against the previous event of the job."""
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
        """The typed event (the one decoder of `domain.events`), or None and a problem."""
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
        """The transition must be one the lifecycle has, and nothing may follow an end."""
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
        """A start opens the next attempt; the events after it carry that attempt."""
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


def _jcs_text(record: StoredEvent) -> str:
    """The RFC 8785 text of the stored envelope (`StoredEvent.covered`), built from the
    record's fields directly: the dict is skipped on replay's hottest line."""
    return jcs_envelope_text(
        record.event_id,
        record.job_id,
        record.version,
        record.type,
        record.schema_version,
        utc_iso(record.occurred_at),
        record.data,
        record.metadata,
        record.prev_hash,
    )
