"""The `job` table: one row per job, the columns the old system's operators query.

The projection is a pure function from an event to the column assignments it makes.
Live appends run it in the append's transaction; a rebuild folds the same function over
the log, so both produce the same rows by construction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final

from jobtrail.domain import lifecycle
from jobtrail.domain.events import Event, JobQueued

COLUMNS: Final = (
    "id",
    "job_type",
    "status",
    "priority",
    "attempt",
    "max_attempts",
    "payload",
    "result",
    "error_type",
    "error_code",
    "error_message",
    "error_category",
    "progress",
    "worker_id",
    "idempotency_key",
    "created_at",
    "available_at",
    "started_at",
    "completed_at",
    "updated_at",
    "version",
    "queue",
    "concurrency_key",
    "retry_of",
)
_ASSIGNABLE: Final = frozenset(COLUMNS)

LIVE_COLUMNS: Final = _ASSIGNABLE | {"lease_expires_at"}
"""What a live append sets: the projection, and the lease of a running attempt, which the
events set and clear but heartbeats move without events (so a rebuild leaves it alone)."""


def assignments(event: Event, columns: frozenset[str] = _ASSIGNABLE) -> dict[str, Any]:
    """The ``columns`` ``event`` sets on its job's row (by default the projection's)."""
    values = {k: v for k, v in event.changes().items() if k in columns}
    status = lifecycle.status_after(event.trigger)
    if status is not None:
        values["status"] = status.value
    values["version"] = event.version
    values["updated_at"] = event.occurred_at
    if isinstance(event, JobQueued):
        values["id"] = event.job_id
    return values


def new_row() -> dict[str, Any]:
    """A row before its first event: every column empty."""
    return dict.fromkeys(COLUMNS)


def fold(events: Iterable[Event]) -> dict[str, Any]:
    """The row that one job's events, in version order, produce."""
    row = new_row()
    for event in events:
        row.update(assignments(event))
    return row


def rows_from_log(events_by_job: Iterable[Event]) -> Iterator[dict[str, Any]]:
    """Rows from a stream of events grouped by job and in version order within a job."""
    current: str | None = None
    row = new_row()
    for event in events_by_job:
        if event.job_id != current:
            if current is not None:
                yield row
            current, row = event.job_id, new_row()
        row.update(assignments(event))
    if current is not None:
        yield row
