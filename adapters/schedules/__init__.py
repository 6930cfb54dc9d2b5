"""Cron schedules: jobs enqueued at each tick of a cron expression (docs/schedules.md).

The Python API is `Schedules`, which `Jobtrail.schedules()` returns::

    schedules = trail.schedules()
    schedules.add("nightly-report", "30 2 * * *", "build_report", {"kind": "daily"},
                  timezone="Europe/Berlin", catch_up="latest", reason="JIRA-12",
                  meta=jobtrail.Meta(actor="ops"))
    schedules.list()
    schedules.run_due()          # what every worker's scheduler does each second
    schedules.remove("nightly-report", meta=jobtrail.Meta(actor="ops"))

`cron` reads expressions (cronsim), `definition` checks what `add` is given, `store` keeps
the `job_schedule` table and logs each change in `control_log`, `scheduler` enqueues ticks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobtrail.adapters.schedules.cron import MAX_CATCH_UP, CatchUp, Cron
from jobtrail.adapters.schedules.definition import Definition, Schedule, tick_key
from jobtrail.adapters.schedules.scheduler import Scheduler, SchedulerLoop
from jobtrail.adapters.schedules.store import Change, ScheduleStore
from jobtrail.domain import limits
from jobtrail.domain.events import DEFAULT_QUEUE
from jobtrail.domain.job import SYSTEM, Meta
from jobtrail.domain.services import JobService, check_meta
from sqlalchemy import Engine

__all__ = [
    "MAX_CATCH_UP",
    "CatchUp",
    "Change",
    "Cron",
    "Definition",
    "Schedule",
    "Scheduler",
    "SchedulerLoop",
    "Schedules",
    "tick_key",
]


class Schedules:
    """Add, list and remove schedules, and enqueue their due ticks, on one database.

    Times come from the job service's clock (`connect(url, clock=...)`), so a test can move
    time for the scheduler as it does for workers.
    """

    def __init__(self, engine: Engine, service: JobService) -> None:
        self.store = ScheduleStore(engine)
        self.service = service
        self.scheduler = Scheduler(self.store, service, service.clock)

    def add(
        self,
        name: str,
        cron: str,
        job_type: str,
        payload: dict[str, Any] | None = None,
        *,
        timezone: str = "UTC",
        catch_up: str = CatchUp.LATEST,
        priority: int = 0,
        max_attempts: int = 3,
        queue: str = DEFAULT_QUEUE,
        reason: str | None = None,
        meta: Meta = SYSTEM,
    ) -> Change:
        """Add a schedule, or replace the one with this name (`Change.REPLACED`; the same
        definition again is `Change.UNCHANGED` and writes nothing).

        Its first tick is the first after now: a schedule does not reach back. Every field
        is checked first (`InvalidSchedule`, `InvalidField`: one line naming it); then the
        row and its ``schedule_added`` / ``schedule_replaced`` control-log entry are written
        in one transaction.
        """
        definition = Definition.checked(
            name,
            cron,
            job_type,
            {} if payload is None else payload,
            timezone=timezone,
            catch_up=catch_up,
            priority=priority,
            max_attempts=max_attempts,
            queue=queue,
        )
        _check_who(reason, meta)
        return self.store.put(definition, actor=meta.actor, reason=reason, now=self._now())

    def get(self, name: str) -> Schedule:
        """`UnknownSchedule` if there is none."""
        return self.store.get(name)

    def list(self) -> list[Schedule]:
        """Every schedule, by name."""
        return self.store.list()

    def remove(self, name: str, *, reason: str | None = None, meta: Meta = SYSTEM) -> Schedule:
        """Delete it (a ``schedule_removed`` control-log entry with it); returns what it was.
        `UnknownSchedule`, nothing written, if there is none. Jobs already enqueued stay."""
        _check_who(reason, meta)
        return self.store.remove(name, actor=meta.actor, reason=reason, now=self._now())

    def run_due(self) -> int:
        """Enqueue every schedule's due ticks now; returns how many jobs it created (a tick
        another scheduler enqueued at the same moment may be counted by both)."""
        return self.scheduler.run_due()

    def loop(self, interval: float = 1.0) -> SchedulerLoop:
        """`run_due` every ``interval`` seconds: ``.run()`` here, or ``.start()`` a thread."""
        limits.WAIT.check(interval, "interval")
        return SchedulerLoop(self.scheduler, interval)

    def next_tick(self, schedule: Schedule) -> datetime | None:
        """When it enqueues next (UTC)."""
        return schedule.next_tick(self._now())

    def _now(self) -> datetime:
        return self.service.clock.now()


def _check_who(reason: str | None, meta: Meta) -> None:
    limits.check_optional(limits.REASON, reason, "reason")
    check_meta(meta)
