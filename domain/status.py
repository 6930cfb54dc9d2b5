"""The statuses a job can be in."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its lifecycle; the values are stored in the `job` table.

    - ``queued``: waiting for a worker (new, or a retry scheduled for ``available_at``);
    - ``processing``: a worker holds a lease on it and runs its processor;
    - ``completed``: its processor returned a result (terminal);
    - ``failed``: it failed for good — no retry left or not retryable (terminal);
    - ``cancelled``: someone cancelled it before it finished (terminal).
    """

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
