"""A worker's settings, checked when they are made, and the counts it keeps while it runs.

Every number is checked in `WorkerSettings.__post_init__`, so a worker never starts with a
setting that cannot work: a NaN heartbeat never renews a lease (the worker then reaps its own
live jobs), a NaN or negative grace period hands jobs back at once or never, a lease of
``inf`` or ``1e300`` overflows the date arithmetic in the middle of a claim. A bad setting is
one `InvalidWorkerSettings` line naming it. The CLI refuses the same values when it parses
its options; these checks hold for every caller of the Python API.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from jobtrail.domain.errors import JobtrailError
from jobtrail.domain.json_values import storable_text

MAX_SECONDS = 7 * 86_400.0
"""The longest lease, heartbeat, grace period, reap interval or throttle: a week, as the
CLI's options allow (far below what the clocks, ``threading`` and the timestamps of both
backends hold; a lease is renewed by heartbeats, it need not cover a whole job)."""
MAX_POLL_SECONDS = 60.0
POLL_SECONDS = 0.05
"""How often a worker without push wakeups (SQLite) looks for jobs; also a busy worker's turn."""
FALLBACK_POLL_SECONDS = 1.0
"""How often an idle worker with push wakeups (PostgreSQL) looks anyway, in case one was lost."""
MAX_WORKER_ID = 190
"""`job.worker_id` is VARCHAR(200), and the worker's reaper acts as ``reaper@<worker id>``:
an actor is at most 200 characters."""
MAX_CONCURRENCY = 1024
MAX_PREFETCH = 1000


class InvalidWorkerSettings(JobtrailError):
    """Worker setting {name}: {reason}."""


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 4
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 10.0
    """How often leases are renewed. The worker renews at least twice per lease: a heartbeat
    longer than half the lease is shortened to it (as the CLI does)."""
    job_types: frozenset[str] | None = None
    queues: frozenset[str] | None = None
    """The named queues this worker serves; None: every queue."""
    until_empty: bool = False
    max_jobs: int | None = None
    poll_seconds: float | None = None
    """How often an idle worker looks for jobs without being told. None: every
    `POLL_SECONDS` (50 ms) without push wakeups (SQLite), every `FALLBACK_POLL_SECONDS` (1 s)
    with them (PostgreSQL: a notification, or a delayed job's due time, wakes it first).
    A worker with jobs running takes a turn at least this often (default 50 ms)."""
    push_only: bool = False
    """Never poll while idle: only a push wakeup, a delayed job's due time or the reaper's
    interval ends the wait (tests of the push path; refused without push wakeups)."""
    grace_seconds: float = 10.0
    reap_seconds: float = 1.0
    progress_seconds: float = 1.0
    prefetch: int = 4
    """Jobs claimed per place of ``concurrency``: processors never wait for a claim, and one
    commit covers many jobs. Prefetched jobs are started (leased) while they wait."""
    give_up_seconds: float = 10.0
    """How long the database may refuse every write (permission denied, a read-only
    database) before the worker stops with an error. An unreachable database
    (`DatabaseUnavailable`) is waited for however long it takes; a missing schema stops the
    worker at once."""

    def __post_init__(self) -> None:
        _count("concurrency", self.concurrency, MAX_CONCURRENCY)
        _count("prefetch", self.prefetch, MAX_PREFETCH)
        if self.max_jobs is not None:
            _count("max_jobs", self.max_jobs, None)
        _seconds("lease_seconds", self.lease_seconds)
        _seconds("heartbeat_seconds", self.heartbeat_seconds)
        _seconds("grace_seconds", self.grace_seconds, zero=True)
        _seconds("reap_seconds", self.reap_seconds)
        _seconds("progress_seconds", self.progress_seconds, zero=True)
        if self.poll_seconds is not None:
            _seconds("poll_seconds", self.poll_seconds, most=MAX_POLL_SECONDS)
        if not isinstance(self.push_only, bool):
            reason = f"must be True or False, not {_shown(self.push_only)}"
            raise InvalidWorkerSettings(name="push_only", reason=reason)
        if self.push_only and self.poll_seconds is not None:
            reason = "must be None with push_only (which never polls)"
            raise InvalidWorkerSettings(name="poll_seconds", reason=reason)
        _seconds("give_up_seconds", self.give_up_seconds)
        if self.job_types is not None:
            object.__setattr__(self, "job_types", _job_types(self.job_types))
        if self.queues is not None:
            object.__setattr__(self, "queues", _job_types(self.queues, "queues"))

    def idle_poll(self, pushed: bool) -> float | None:
        """Seconds between an idle worker's looks for jobs (None: never), with or without
        push wakeups."""
        if self.push_only:
            return None
        if self.poll_seconds is not None:
            return self.poll_seconds
        return FALLBACK_POLL_SECONDS if pushed else POLL_SECONDS

    @property
    def busy_poll(self) -> float:
        """Seconds between the turns of a worker with jobs running, if no result comes."""
        return self.poll_seconds if self.poll_seconds is not None else POLL_SECONDS

    @property
    def renew_every(self) -> float:
        """Seconds between heartbeats: the setting, at most half the lease."""
        return min(self.heartbeat_seconds, self.lease_seconds / 2)


@dataclass
class WorkerStats:
    """What the worker recorded: each count moves only once its write is committed."""

    claimed: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    absorbed: int = 0
    """Outcomes dropped because the job had finished or moved on (cancelled, reaped)."""
    reaped: int = 0
    failure_latencies: list[float] = field(default_factory=list)
    """Seconds from a processor raising to its job's failure being committed."""


def check_worker_id(worker_id: object) -> str:
    """A worker id given by the caller: 1 to `MAX_WORKER_ID` characters both backends store."""
    if (
        not isinstance(worker_id, str)
        or not 0 < len(worker_id) <= MAX_WORKER_ID
        or storable_text(worker_id) != worker_id
    ):
        raise InvalidWorkerSettings(
            name="worker_id",
            reason=f"must be a str of 1 to {MAX_WORKER_ID} characters without U+0000 or lone "
            "surrogates",
        )
    return worker_id


def _count(name: str, value: Any, most: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        reason = f"must be a whole number, not {_shown(value)}"
        raise InvalidWorkerSettings(name=name, reason=reason)
    if value < 1 or (most is not None and value > most):
        limit = "at least 1" if most is None else f"from 1 to {most}"
        raise InvalidWorkerSettings(name=name, reason=f"must be {limit}, not {_shown(value)}")


def _seconds(name: str, value: Any, *, zero: bool = False, most: float = MAX_SECONDS) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and math.isfinite(value) and (value >= 0 if zero else value > 0) and value <= most:
        return
    least = "0 or more" if zero else "more than 0"
    raise InvalidWorkerSettings(
        name=name, reason=f"must be {least} and at most {most:g} seconds, not {_shown(value)}"
    )


def _job_types(value: Any, name: str = "job_types") -> frozenset[str]:
    """A non-empty set of names (job types, or queues)."""
    what = "job type" if name == "job_types" else "queue"
    if isinstance(value, str) or not isinstance(value, Collection):
        raise InvalidWorkerSettings(
            name=name, reason=f"must be a set of {what}s or None, not {_shown(value)}"
        )
    types = frozenset(value)
    if not types or not all(isinstance(t, str) and t.strip() for t in types):
        raise InvalidWorkerSettings(
            name=name,
            reason=f"must name at least one {what}, each a non-empty str (None: any {what})",
        )
    return types


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return repr(float(value))  # nan, inf, 1e+300
    if isinstance(value, int) and not isinstance(value, bool):
        return str(int(value)) if int(value).bit_length() <= 64 else "an integer beyond 2^64"
    return f"a value of type {type(value).__name__}"
