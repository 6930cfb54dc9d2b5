"""Enqueueing due ticks: `Scheduler.run_due`, and `SchedulerLoop` running it every second.

Any number of schedulers may run (every worker has one, plus `jobtrail scheduler`); none
coordinates with another. Each tick's job carries the idempotency key
``schedule:NAME:TICK`` (`tick_key`), and a repeated key returns the job that has it and
writes nothing, so a tick becomes exactly one job however many schedulers see it. Then
``last_tick_at`` moves forward (never back), and the next round starts from there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from datetime import datetime

from jobtrail.adapters.schedules.cron import CatchUp, Due
from jobtrail.adapters.schedules.definition import Schedule, tick_key
from jobtrail.adapters.schedules.store import ScheduleStore
from jobtrail.domain.errors import JobtrailError
from jobtrail.domain.job import Meta
from jobtrail.domain.ports import Clock
from jobtrail.domain.services import JobService, JobSpec

log = logging.getLogger(__name__)

ACTOR = "scheduler"
"""The actor of a scheduled job's `JobQueued`; its correlation id is ``schedule:NAME``."""
BATCH = 100
"""Jobs submitted per transaction when a catch-up enqueues many ticks."""


class Scheduler:
    """Enqueues the due ticks of every schedule, on ``clock``'s time."""

    def __init__(self, store: ScheduleStore, service: JobService, clock: Clock) -> None:
        self.store, self.service, self.clock = store, service, clock
        self._failing: dict[str, str] = {}
        """Schedules whose last round failed, with the error: repeats are logged at DEBUG."""

    def run_due(self) -> int:
        """Enqueue what is due now; returns how many jobs it submitted that had no job when
        it looked (two schedulers racing for one tick may both count it).

        A schedule that fails (its write, or a stored zone the machine no longer knows) is
        logged and left for the next round; the others still run. Failing to read the
        schedules at all raises.
        """
        now = self.clock.now()
        created = 0
        for schedule in self.store.list():
            try:
                created += self.run_one(schedule, now)
            except JobtrailError as error:
                self._report(schedule.name, str(error))
            else:
                self._failing.pop(schedule.name, None)
        return created

    def _report(self, name: str, message: str) -> None:
        level = logging.DEBUG if self._failing.get(name) == message else logging.WARNING
        log.log(level, "schedule %s, trying again next round: %s", name, message)
        self._failing[name] = message

    def run_one(self, schedule: Schedule, now: datetime) -> int:
        """Enqueue ``schedule``'s ticks due at ``now``; the count of new jobs."""
        policy = CatchUp.parse(schedule.catch_up)
        due = schedule.parsed().due(schedule.anchor, now, policy)
        if due.latest is None:
            return 0
        _log_skipped(schedule, due, policy)
        specs = [_spec(schedule, tick) for tick in due.ticks]
        created = self._submit(schedule.name, specs)
        self.store.advance(schedule, due.latest)
        return created

    def _submit(self, name: str, specs: Sequence[JobSpec]) -> int:
        """Submit the ticks no job has yet; the count of those (another scheduler may have
        taken some meanwhile: its job stands, ours is not written)."""
        keys = [spec.idempotency_key for spec in specs if spec.idempotency_key]
        known = self.service.find_by_idempotency_keys(keys) if keys else {}
        new = [spec for spec in specs if spec.idempotency_key not in known]
        meta = Meta(actor=ACTOR, correlation_id=f"schedule:{name}")
        for start in range(0, len(new), BATCH):
            self.service.submit_many(new[start : start + BATCH], meta)
        if new:
            log.info("schedule %s: enqueued %d tick(s), the latest %s", name, len(new), keys[-1])
        return len(new)


def _spec(schedule: Schedule, tick: datetime) -> JobSpec:
    return JobSpec(
        schedule.job_type,
        schedule.payload,
        schedule.max_attempts,
        schedule.priority,
        idempotency_key=tick_key(schedule.name, tick),
        queue=schedule.queue,
    )


def _log_skipped(schedule: Schedule, due: Due, policy: CatchUp) -> None:
    if not due.skipped:
        return
    if policy is CatchUp.ALL:
        log.warning(
            "schedule %s: more than %d ticks were missed; enqueuing the latest %d only",
            schedule.name,
            len(due.ticks),
            len(due.ticks),
        )
    elif policy is CatchUp.LATEST:
        log.info("schedule %s: missed ticks skipped; enqueuing the latest only", schedule.name)
    else:
        log.info("schedule %s: missed ticks up to %s skipped", schedule.name, due.latest)


class SchedulerLoop:
    """`Scheduler.run_due` every ``interval`` seconds until stopped, in this thread
    (`run`) or in a daemon thread (`start`, then `stop`)."""

    def __init__(self, scheduler: Scheduler, interval: float = 1.0) -> None:
        self.scheduler = scheduler
        self.interval = interval
        self.stopping = threading.Event()
        self.created = 0
        self._thread: threading.Thread | None = None
        self._last_error = ""

    def run(self) -> int:
        """Rounds until `stop`; returns the jobs created. Errors are logged, not raised:
        a database that is away now may be back next round."""
        while True:
            self.round()
            if self.stopping.wait(self.interval):
                return self.created

    def round(self) -> None:
        try:
            self.created += self.scheduler.run_due()
        except JobtrailError as error:
            self._report(str(error))
        except Exception:  # a bug must not end the loop of a worker that runs jobs too
            log.exception("scheduler round failed")
        else:
            self._last_error = ""

    def _report(self, message: str) -> None:
        """The first of a run of equal errors at WARNING, its repeats at DEBUG."""
        level = logging.DEBUG if message == self._last_error else logging.WARNING
        log.log(level, "scheduler, trying again in %gs: %s", self.interval, message)
        self._last_error = message

    def start(self) -> SchedulerLoop:
        self._thread = threading.Thread(target=self.run, name="jobtrail-scheduler", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
