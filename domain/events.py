"""The facts of a job's life: one event class per transition of the lifecycle.

An event knows the trigger it stands for (so replay can re-check it against the one
Machine) and the fields it assigns on the job (`changes`), so applying it never runs a
business check. Each event is chained to the job's previous one by a sha-256 hash over
its canonical JSON form (`jobtrail.domain.canonical`): RFC 8785 for every event made here
(``metadata.hash_form = "jcs"``), the previous release's form for events decoded without
it. `event_from_envelope` is the one decoder from an envelope back to an event.

One module, a little over 300 lines, on purpose: the event classes, their registry
(`EVENT_TYPES`) and the decoder are one piece, since the envelope an event writes
(`envelope`, `data`) and the decoder that reads it back must change together, and the
decoder needs the registry. What does not depend on the classes (canonical JSON, hashing,
the time format) is in `canonical`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, ClassVar, Self

from jobtrail.domain.canonical import (
    GENESIS_HASH,
    HASH_FORM,
    canonical_text,
    covered_fields,
    parse_time,
    sha256_hex,
    utc_iso,
)
from jobtrail.domain.ids import time_ordered_id

SCHEMA_VERSION = 1
DEFAULT_QUEUE = "default"
_LATER_FIELDS: dict[str, object] = {
    "queue": DEFAULT_QUEUE,
    "concurrency_key": None,
    "retry_of": None,
    "reason": None,
}
"""`JobQueued`'s optional fields and their defaults: left out of its data when they hold them."""


@dataclass(frozen=True, kw_only=True)
class Event:
    """What every event carries; subclasses add the fields of their transition."""

    trigger: ClassVar[str]
    schema_version: ClassVar[int] = SCHEMA_VERSION

    job_id: str
    version: int
    occurred_at: datetime
    event_id: str = field(default_factory=time_ordered_id)
    actor: str = "system"
    correlation_id: str | None = None
    prev_hash: str = GENESIS_HASH
    hash: str = ""
    position: int | None = None
    """Global position in the log, assigned by the event store when appended."""
    hash_form: str | None = HASH_FORM
    """The rule the hash follows, written in the metadata: ``"jcs"`` (RFC 8785) for every
    new event; None for one decoded from an envelope hashed by the previous release."""
    traceparent: str | None = None
    """The W3C trace context the job was submitted in (`jobtrail.domain.tracecontext`);
    written in the metadata only when set, so events without one hash as they always did."""

    @property
    def type(self) -> str:
        return type(self).__name__

    def data(self) -> dict[str, Any]:
        """The type-specific fields as JSON values."""
        return {f.name: _to_json(getattr(self, f.name)) for f in _own_fields(type(self))}

    def metadata(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"actor": self.actor, "correlation_id": self.correlation_id}
        if self.hash_form is not None:  # None: as the previous release wrote it
            metadata["hash_form"] = self.hash_form
        if self.traceparent is not None:
            metadata["traceparent"] = self.traceparent
        return metadata

    def envelope(self) -> dict[str, Any]:
        """The event as one JSON object: what the CLI prints and consumers receive."""
        return {
            "position": self.position,
            "event_id": self.event_id,
            "job_id": self.job_id,
            "version": self.version,
            "type": self.type,
            "schema_version": self.schema_version,
            "occurred_at": utc_iso(self.occurred_at),
            "data": self.data(),
            "metadata": self.metadata(),
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }

    def changes(self) -> dict[str, Any]:
        """The job fields this event assigns (besides status, version and updated_at)."""
        return {}

    def canonical(self) -> str:
        """The text the hash covers: the envelope without its position and hash.

        An event made by `new` keeps the text its hash was computed from (the event is
        frozen, so it cannot go stale): the store writes it instead of encoding the
        event a second time. Any other event (loaded, replaced) computes it afresh.
        """
        cached: str | None = self.__dict__.get("_canonical")
        return self._canonical_text() if cached is None else cached

    def _canonical_text(self) -> str:
        return canonical_text(self._covered())

    def _covered(self) -> dict[str, Any]:
        return covered_fields(
            event_id=self.event_id,
            job_id=self.job_id,
            version=self.version,
            type=self.type,
            schema_version=self.schema_version,
            occurred_at=self.occurred_at,
            data=self.data(),
            metadata=self.metadata(),
            prev_hash=self.prev_hash,
        )

    def compute_hash(self) -> str:
        return sha256_hex(self.canonical())

    def sealed(self) -> Self:
        """A copy of this event with its hash computed."""
        return replace(self, hash=self.compute_hash())

    @classmethod
    def new(cls, **fields: Any) -> Self:
        """A fresh event with its hash computed (the hash is set before anyone sees it)."""
        event = cls(**fields)
        text = event._canonical_text()
        object.__setattr__(event, "_canonical", text)
        object.__setattr__(event, "hash", sha256_hex(text))
        return event


@dataclass(frozen=True, kw_only=True)
class JobQueued(Event):
    trigger = "submit"
    job_type: str
    payload: dict[str, Any]
    max_attempts: int
    priority: int
    available_at: datetime
    idempotency_key: str | None = None
    queue: str = DEFAULT_QUEUE
    concurrency_key: str | None = None
    retry_of: str | None = None
    """The finished job this one retries (`Job.retry_from`); its own history is untouched."""
    reason: str | None = None
    """Why it was queued, when a person says (a retry's reason)."""

    def data(self) -> dict[str, Any]:
        """The fields, leaving out the optional ones added after schema version 1 was
        published while they hold their defaults: an event queued before they existed
        writes (and hashes, and relays) the same data as it always did."""
        data = super().data()
        for name, default in _LATER_FIELDS.items():
            if data[name] == default:
                del data[name]
        return data

    def changes(self) -> dict[str, Any]:
        return {
            "traceparent": self.traceparent,  # the job's, not a column: later events inherit it
            "queue": self.queue,
            "concurrency_key": self.concurrency_key,
            "retry_of": self.retry_of,
            "job_type": self.job_type,
            "payload": self.payload,
            "max_attempts": self.max_attempts,
            "priority": self.priority,
            "available_at": self.available_at,
            "idempotency_key": self.idempotency_key,
            "created_at": self.occurred_at,
            "attempt": 0,
            "progress": 0,
        }


@dataclass(frozen=True, kw_only=True)
class JobStarted(Event):
    trigger = "start"
    attempt: int
    worker_id: str
    lease_expires_at: datetime

    def changes(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "worker_id": self.worker_id,
            "lease_expires_at": self.lease_expires_at,
            "started_at": self.occurred_at,
            "progress": 0,
        }


@dataclass(frozen=True, kw_only=True)
class JobProgressed(Event):
    trigger = "progress"
    attempt: int
    percent: int
    message: str | None = None

    def changes(self) -> dict[str, Any]:
        return {"progress": self.percent}


@dataclass(frozen=True, kw_only=True)
class JobCompleted(Event):
    trigger = "complete"
    attempt: int
    result: Any
    duration_ms: float

    def changes(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "progress": 100,
            "completed_at": self.occurred_at,
            "lease_expires_at": None,
            **NO_ERROR,
        }


@dataclass(frozen=True, kw_only=True)
class _Failure(Event):
    """The fields every failure records (a scheduled retry or the final one)."""

    attempt: int
    error_type: str
    error_code: str
    error_message: str
    error_category: str
    retryable: bool

    def changes(self) -> dict[str, Any]:
        return {
            "error_type": self.error_type,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "error_category": self.error_category,
            "lease_expires_at": None,
        }


@dataclass(frozen=True, kw_only=True)
class JobRetryScheduled(_Failure):
    trigger = "schedule_retry"
    available_at: datetime
    delay_seconds: float

    def changes(self) -> dict[str, Any]:
        return {**super().changes(), "available_at": self.available_at, "worker_id": None}


@dataclass(frozen=True, kw_only=True)
class JobFailed(_Failure):
    trigger = "fail"

    def changes(self) -> dict[str, Any]:
        return {**super().changes(), "completed_at": self.occurred_at}


@dataclass(frozen=True, kw_only=True)
class JobCancelled(Event):
    trigger = "cancel"
    reason: str | None = None
    by: str = "system"

    def changes(self) -> dict[str, Any]:
        return {"completed_at": self.occurred_at, "lease_expires_at": None}


NO_ERROR: dict[str, Any] = dict.fromkeys(
    ("error_type", "error_code", "error_message", "error_category")
)

EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        JobQueued,
        JobStarted,
        JobProgressed,
        JobCompleted,
        JobRetryScheduled,
        JobFailed,
        JobCancelled,
    )
}
TERMINAL_EVENT_TYPES = frozenset({"JobCompleted", "JobFailed", "JobCancelled"})


class UnknownEventType(ValueError):
    """An event type this version of jobtrail does not know."""


def event_from_envelope(envelope: Mapping[Any, Any]) -> Event:
    """The typed event of one envelope: a stored row, a published record or an exported line.

    The one decoder of the project (the store, the Kafka codec, the consumer and replay use
    it). ``occurred_at`` may be a `datetime` (a database row) or its ISO text (JSON); a
    missing ``metadata`` or ``position`` is allowed; metadata without ``hash_form`` is an
    event hashed by the previous release's rule (``hash_form`` None), and the event keeps
    that rule; ``traceparent`` is read back when the metadata has one. Raises
    `UnknownEventType` for a type this version does not know, and `TypeError`/`ValueError`
    for data it cannot build from.
    """
    try:
        cls = EVENT_TYPES[envelope["type"]]
    except KeyError:
        raise UnknownEventType(envelope["type"]) from None
    own, times = _decoding(cls)
    decoded = {
        k: (parse_time(v) if v is not None and k in times else v)
        for k, v in envelope["data"].items()
        if k in own
    }
    occurred_at = envelope["occurred_at"]
    metadata = envelope.get("metadata") or {}
    return cls(
        job_id=envelope["job_id"],
        version=envelope["version"],
        event_id=envelope["event_id"],
        occurred_at=occurred_at if isinstance(occurred_at, datetime) else parse_time(occurred_at),
        actor=metadata.get("actor", "system"),
        correlation_id=metadata.get("correlation_id"),
        hash_form=metadata.get("hash_form"),
        traceparent=metadata.get("traceparent"),
        prev_hash=envelope["prev_hash"],
        hash=envelope["hash"],
        position=envelope.get("position"),
        **decoded,
    )


_BASE_FIELDS = frozenset(f.name for f in fields(Event))


_OWN_FIELDS: dict[type[Event], tuple[Any, ...]] = {}


def _own_fields(cls: type[Event]) -> tuple[Any, ...]:
    """The fields a subclass adds to the envelope (cached: this is on the hot path)."""
    if cls not in _OWN_FIELDS:
        _OWN_FIELDS[cls] = tuple(f for f in fields(cls) if f.name not in _BASE_FIELDS)
    return _OWN_FIELDS[cls]


_DECODING: dict[type[Event], tuple[frozenset[str], frozenset[str]]] = {}


def _decoding(cls: type[Event]) -> tuple[frozenset[str], frozenset[str]]:
    """A subclass's own field names, and those holding a time (cached: replay's hot path)."""
    if cls not in _DECODING:
        own = _own_fields(cls)
        _DECODING[cls] = (
            frozenset(f.name for f in own),
            frozenset(f.name for f in own if "datetime" in str(f.type)),
        )
    return _DECODING[cls]


def _to_json(value: Any) -> Any:
    return utc_iso(value) if isinstance(value, datetime) else value
