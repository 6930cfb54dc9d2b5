"""The Python API product services use: submit, cancel and read jobs.

``jobtrail.connect(url)`` is the one place where the pieces are wired together (the
engine, the event store, the read model, the domain service), cosmicpython's bootstrap.

    from jobtrail.adapters.bootstrap import connect

    trail = connect("postgresql://app@db/jobs")
    job_id = trail.submit("shot_video_generation", {"shot": 42}, idempotency_key="shot-42")
    trail.get(job_id)["status"]       # 'queued'
    trail.cancel(job_id, reason="storyboard deleted")
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobtrail.adapters.config import Settings
from jobtrail.adapters.sql import engine as database
from jobtrail.adapters.sql.queries import JobQueries, rebuild
from jobtrail.adapters.sql.queue import SqlJobQueue
from jobtrail.adapters.sql.retention import JobArchived, whereabouts
from jobtrail.adapters.sql.stats_query import read_stats
from jobtrail.adapters.sql.store import SqlEventStore
from jobtrail.domain import limits
from jobtrail.domain.errors import InvalidField, JobNotFound
from jobtrail.domain.events import DEFAULT_QUEUE, Event
from jobtrail.domain.ids import parse_job_id
from jobtrail.domain.job import SYSTEM, Meta, Outcome
from jobtrail.domain.lineage import DEFAULT_RETRY_LIMIT, RetryFilter
from jobtrail.domain.moments import check_time
from jobtrail.domain.ports import Clock, SystemClock
from jobtrail.domain.retry import RetryPolicy
from jobtrail.domain.services import JobService, JobSpec, check_meta
from jobtrail.domain.status import JobStatus
from jobtrail.projections.job_table import fold
from jobtrail.projections.stats import JobStats

if TYPE_CHECKING:
    from jobtrail.adapters.kafka.publisher import KafkaSettings
    from jobtrail.adapters.kafka.relay import Relay, RelaySettings
    from jobtrail.adapters.schedules import Schedules
    from jobtrail.adapters.sql.flow_control import FlowSettings
    from jobtrail.processors.engine.reaper import Reaper
    from jobtrail.processors.engine.worker import Worker, WorkerSettings
    from jobtrail.processors.registry import Registry
    from sqlalchemy import Engine

# The Kafka client, Alembic and the worker engine are imported by the methods that use them:
# `submit`, `get` and `jobs` (the CLI's quick commands, a web request) load none of them.


@dataclass(frozen=True)
class FoundJob:
    """A job's row (`Jobtrail.find`): from the `job` table, or folded from its events when
    the table has no row (``log_events`` > 0; ``pruned`` when a recorded prune explains it)."""

    row: dict[str, Any]
    log_events: int = 0
    pruned: bool = False

    @property
    def from_log(self) -> bool:
        return self.log_events > 0


@dataclass
class Jobtrail:
    engine: Engine
    store: SqlEventStore
    queries: JobQueries
    service: JobService
    queue: SqlJobQueue

    def worker(
        self,
        settings: WorkerSettings | None = None,
        registry: Registry | None = None,
        **kwargs: Any,
    ) -> Worker:
        """A worker running the given processors (default: the sample processors).

        On PostgreSQL an idle worker is woken by LISTEN/NOTIFY (docs/wakeup.md)."""
        from jobtrail.adapters.sql.wakeup import job_wakeup
        from jobtrail.processors.engine.worker import Worker, WorkerSettings
        from jobtrail.processors.registry import default_registry

        settings = settings or WorkerSettings()
        kwargs.setdefault("wakeup", job_wakeup(self.engine, settings.queues))
        return Worker(
            self.service,
            self.queue,
            registry or default_registry(),
            settings,
            clock=self.service.clock,
            **kwargs,
        )

    def relay(
        self,
        kafka: KafkaSettings,
        settings: RelaySettings | None = None,
        owner: str | None = None,
    ) -> Relay:
        """The relay publishing this database's log to `kafka.topic` (its position is per topic).

        On PostgreSQL it is woken by LISTEN/NOTIFY when events are appended (docs/wakeup.md)."""
        from jobtrail.adapters.kafka.publisher import KafkaPublisher
        from jobtrail.adapters.kafka.relay import Relay
        from jobtrail.adapters.kafka.relay_position import SqlRelayPosition
        from jobtrail.adapters.kafka.relay_source import PrefetchingSource, SqlRecordSource
        from jobtrail.adapters.sql.wakeup import events_wakeup

        positions = SqlRelayPosition(self.engine, name=kafka.topic)
        publisher = KafkaPublisher(kafka)
        source = PrefetchingSource(SqlRecordSource(self.engine))
        wakeup = events_wakeup(self.engine)
        return Relay(source, positions, publisher, self.service.clock, settings, owner, wakeup)

    def reaper(self) -> Reaper:
        from jobtrail.processors.engine.reaper import Reaper

        return Reaper(self.service, self.queue, self.service.clock)

    def schedules(self) -> Schedules:
        """Cron schedules: `add`, `list`, `remove`, and `run_due` (docs/schedules.md)."""
        from jobtrail.adapters.schedules import Schedules

        return Schedules(self.engine, self.service)

    def flow(self) -> FlowSettings:
        """Concurrency limits, pauses and queues: `FlowSettings.set_limit`, `pause`,
        `resume`, `queues`, … (every change is written to the control log)."""
        from jobtrail.adapters.sql.flow_control import FlowSettings

        return FlowSettings(self.engine, self.service.clock)

    def init_db(self) -> None:
        """Create or upgrade the schema (idempotent)."""
        from jobtrail.adapters.sql import migrate

        migrate.upgrade(self.engine)

    def submit(
        self,
        job_type: str,
        payload: dict[str, Any] | None = None,
        *,
        max_attempts: int = 3,
        priority: int = 0,
        delay: float = 0.0,
        idempotency_key: str | None = None,
        queue: str = DEFAULT_QUEUE,
        concurrency_key: str | None = None,
        meta: Meta = SYSTEM,
        traceparent: str | None = None,
    ) -> str:
        """Queue a job; returns its id (the known job's id for a repeated idempotency key).

        ``payload=None`` means ``{}``; anything else must be a JSON object. ``queue`` is the
        named queue it waits in (workers serve chosen queues); ``concurrency_key`` is what a
        per-key limit counts (a customer, a tenant). ``traceparent`` (W3C Trace Context, or
        ``meta.traceparent``) is the submitter's trace: kept in the job's events and Kafka
        headers, and the parent of each attempt's span. Every field is checked against
        `jobtrail.domain.limits` before anything is written.
        """
        if traceparent is not None and isinstance(meta, Meta):
            meta = replace(meta, traceparent=traceparent)
        payload = {} if payload is None else payload
        spec = JobSpec(
            job_type,
            payload,
            max_attempts,
            priority,
            delay,
            idempotency_key,
            queue=queue,
            concurrency_key=concurrency_key,
        )
        return self.service.submit(spec, meta)

    def submit_many(self, specs: Sequence[JobSpec], meta: Meta = SYSTEM) -> list[str]:
        """Queue many jobs in one transaction (all or none); ids in the order given."""
        return self.service.submit_many(specs, meta)

    def cancel(self, job_id: str, reason: str | None = None, meta: Meta = SYSTEM) -> Outcome:
        return self.service.cancel(parse_job_id(job_id), reason, meta)

    def retry(self, job_id: str, reason: str | None = None, meta: Meta = SYSTEM) -> str:
        """Queue a finished job again as a new job (``retry_of`` names it); its id.

        The original is not touched. While its retry has not finished, retrying it again
        returns that retry's id (docs/retry.md); a job that has not finished is refused.
        """
        with self._naming_archived_jobs():
            return self.service.retry(
                parse_job_id(job_id), self.queries.finished_retries, reason, meta
            )

    def retry_many(
        self, job_ids: Sequence[str], reason: str | None = None, meta: Meta = SYSTEM
    ) -> list[str]:
        """`retry` for several jobs in one transaction (all or none); new ids in order."""
        ids = [parse_job_id(job_id) for job_id in job_ids]
        with self._naming_archived_jobs():
            return self.service.retry_many(ids, self.queries.finished_retries, reason, meta)

    @contextmanager
    def _naming_archived_jobs(self) -> Iterator[None]:
        """A job not found that an archive holds is `JobArchived`, which names the archive
        (as `show` does): a retry cannot read its history from the log any more."""
        try:
            yield
        except JobArchived:
            raise
        except JobNotFound as error:
            job_id = error.context.get("job_id")
            if not isinstance(job_id, str):
                raise
            raise whereabouts(self.engine, job_id).not_found() from None

    def retry_where(
        self,
        *,
        since: datetime,
        status: str = JobStatus.FAILED,
        job_type: str | None = None,
        error_code: str | None = None,
        until: datetime | None = None,
        limit: int = DEFAULT_RETRY_LIMIT,
        dry_run: bool = False,
        reason: str | None = None,
        meta: Meta = SYSTEM,
    ) -> list[tuple[str, str | None]]:
        """Retry the finished jobs that match, in one transaction: (original id, new id)
        pairs, the earliest finished first; the new id is None in a dry run, which writes
        nothing. ``since``/``until``: when they finished (``completed_at``); jobs already
        retried are left out (`jobtrail.domain.lineage.RetryFilter`).
        """
        where = RetryFilter(since, status, job_type, error_code, until, limit)
        where.check()
        limits.check_optional(limits.REASON, reason, "reason")
        check_meta(meta)
        originals = [row["id"] for row in self.queries.to_retry(where)]
        if dry_run or not originals:
            return [(job_id, None) for job_id in originals]
        new_ids = self.service.retry_many(originals, self.queries.finished_retries, reason, meta)
        return list(zip(originals, new_ids, strict=True))

    def get(self, job_id: str) -> dict[str, Any]:
        """The job's row in the `job` table."""
        job_id = parse_job_id(job_id)
        row = self.queries.get(job_id)
        if row is None:
            raise JobNotFound(job_id=job_id)
        return row

    def find(self, job_id: str) -> FoundJob:
        """The job's row, also for a job whose row was pruned from the `job` table: then
        the row its events in the log fold into (what `jobtrail rebuild` would restore).

        `JobArchived` (a `JobNotFound`) names the archive that holds a job's history.
        """
        job_id = parse_job_id(job_id)
        row = self.queries.get(job_id)
        if row is not None:
            return FoundJob(row)
        where = whereabouts(self.engine, job_id)
        if where.in_table and (row := self.queries.get(job_id)) is not None:
            return FoundJob(row)  # a rebuild restored it meanwhile
        events = self.store.load(job_id) if where.log_events else []
        if not events:
            raise where.not_found()
        row = fold(events)
        return FoundJob(row, len(events), where.pruned(row["completed_at"]))

    def wait(self, job_id: str, timeout: float, *, fallback_seconds: float = 1.0) -> dict[str, Any]:
        """The job's row once it is completed, failed or cancelled (`get`'s row).

        `WaitTimedOut` if it is not final within ``timeout`` seconds; `JobNotFound` at
        once for an unknown id. PostgreSQL wakes on a notification and re-reads the row
        every ``fallback_seconds`` anyway; SQLite polls (docs/waiting.md).
        """
        from jobtrail.adapters.sql.waiting import wait_for

        job_id = parse_job_id(job_id)
        return wait_for(
            self.engine, self.queries.get, job_id, timeout, fallback_seconds=fallback_seconds
        )

    def jobs(
        self,
        status: str | None = None,
        job_type: str | None = None,
        limit: int = 50,
        queue: str | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of the `job` table, newest first; the filters are checked like a submit's."""
        if status is not None and status not in {s.value for s in JobStatus}:
            statuses = ", ".join(s.value for s in JobStatus)
            raise InvalidField(field="status", reason=f"must be one of {statuses}, not {status!r}")
        if job_type is not None:
            limits.JOB_TYPE_FILTER.check(job_type, "job_type")
        if queue is not None:
            limits.JOB_TYPE_FILTER.check(queue, "queue")
        limit = limits.LIST_LIMIT.check(limit, "limit")
        return self.queries.list_jobs(status, job_type, limit, queue)

    def history(self, job_id: str) -> list[Event]:
        """The job's events in version order (`JobArchived` if an archive holds them)."""
        job_id = parse_job_id(job_id)
        events = self.store.load(job_id)
        if not events:
            raise whereabouts(self.engine, job_id).not_found()
        return events

    def rebuild(self) -> int:
        return rebuild(self.engine, self.store)

    def stats(self, since: datetime | None = None) -> JobStats:
        """Counts, failure rate, error codes and durations, computed in the database
        (`read_stats`: `compute` over every row took 25 s at 2.5M). With ``since``, of the
        live jobs and those finished at or after it, at a cost that does not grow with the
        table; without it, of every row."""
        if since is not None:
            check_time(since, "since")
        return read_stats(self.engine, since)

    def close(self) -> None:
        self.engine.dispose()


def connect(
    url: str | None = None,
    *,
    clock: Clock | None = None,
    policy: RetryPolicy | None = None,
    read_only: bool = False,
) -> Jobtrail:
    """Wire jobtrail to the database at ``url`` (default: JOBTRAIL_DATABASE_URL or SQLite).

    Nothing connects until the first call that needs the database. A URL jobtrail cannot
    use (empty, another database, another driver, malformed) is `InvalidDatabaseUrl` here,
    before anything connects. On SQLite the file must exist (`NoDatabase`) except for
    `Jobtrail.init_db`, which creates it. ``read_only``: SQLite opens the file read-only,
    so it can be read in a directory the reader cannot write (the CLI's reading commands).
    """
    engine = database.create(
        Settings.from_env().database_url if url is None else url, read_only=read_only
    )
    clock = clock or SystemClock()
    store = SqlEventStore(engine)
    queries = JobQueries(engine)
    service = JobService(
        store, queries.find_by_idempotency_keys, clock=clock, policy=policy or RetryPolicy()
    )
    return Jobtrail(engine, store, queries, service, SqlJobQueue(engine, clock))
