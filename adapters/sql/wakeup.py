"""Push wakeups for idle workers and the relay: LISTEN on PostgreSQL, nothing on SQLite.

Migration 0010 notifies `JOB_AVAILABLE` (payload: the job's queue, or `EVERY_QUEUE`) when
a job may have become claimable, and `EVENTS_APPENDED` when events were appended. A wakeup
source is what the worker and the relay are given by the composition root: called with a
function, it returns a context in which that function is called for each notification
that concerns them, and each time LISTEN takes effect (the first time and after every
reconnection), so nothing that happened before LISTEN, or while it was down, goes unseen.
It rides on the listener of `jobtrail.adapters.sql.waiting` (one thread and one
connection per engine and channel, reconnecting with backoff). A notification only says
"look again": the worker claims, the relay reads the log, and both still poll now and then
(their fallback), in case a notification was lost.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from jobtrail.adapters.sql.engine import is_postgres
from jobtrail.adapters.sql.waiting import listener_for

if TYPE_CHECKING:
    from sqlalchemy import Engine

JOB_AVAILABLE = "jobtrail_job_available"
"""Migration 0010's channel for jobs that may be claimable (tests/unit/test_wakeup.py)."""
EVENTS_APPENDED = "jobtrail_events_appended"
"""Migration 0010's channel for appended events."""
EVERY_QUEUE = "*"
"""The payload that wakes the workers of every queue (a pause lifted, a limit changed)."""

WakeSource = Callable[[Callable[[], None]], AbstractContextManager[object]]


def job_wakeup(engine: Engine, queues: Collection[str] | None) -> WakeSource | None:
    """Wakes a worker serving ``queues`` (None: every queue); None on SQLite."""
    if not is_postgres(engine):
        return None
    payloads = None if queues is None else {*queues, EVERY_QUEUE}

    def watch(wake: Callable[[], None]) -> AbstractContextManager[object]:
        return listener_for(engine, JOB_AVAILABLE).watch(wake, payloads)

    return watch


def events_wakeup(engine: Engine) -> WakeSource | None:
    """Wakes the relay when events were appended; None on SQLite."""
    if not is_postgres(engine):
        return None

    def watch(wake: Callable[[], None]) -> AbstractContextManager[object]:
        return listener_for(engine, EVENTS_APPENDED).watch(wake)

    return watch
