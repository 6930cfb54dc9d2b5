"""Retention of the `job` table: pruning finished jobs' rows, and where a job's history is.

The `job` table is a projection: the log can rebuild every row (`jobtrail rebuild`), so a
finished job's row may be deleted to keep the table small while its events stay in the log.
`prune_job_rows` deletes, in batches, the rows of jobs that finished before a time; it never
touches `job_events` nor a queued or running job. Each prune is recorded in the control log
(action ``job_rows_pruned``), so `pruned_before` can tell a pruned row from a missing one.

`where_is` answers for a job whose row is gone: the log still holds its events (a prune), an
archive holds them (`jobtrail archive`: `job_log_archive_jobs`), or nothing does.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jobtrail.adapters.sql.control import record_change
from jobtrail.adapters.sql.engine import WRITE
from jobtrail.adapters.sql.errors import translated_errors
from jobtrail.adapters.sql.schema import (
    control_log,
    job,
    job_events,
    job_log_archive_jobs,
    job_log_archives,
)
from jobtrail.domain import limits
from jobtrail.domain.canonical import parse_time, utc_iso
from jobtrail.domain.errors import InvalidField, JobNotFound
from jobtrail.domain.job import SYSTEM, Meta
from jobtrail.domain.ports import Clock
from jobtrail.domain.services import check_meta
from jobtrail.domain.status import TERMINAL_STATUSES
from sqlalchemy import ColumnElement, Connection, Engine, delete, exists, func, select

log = logging.getLogger(__name__)

PRUNED = "job_rows_pruned"
"""The control log's action for a prune (subject ``job``)."""
BATCH_ROWS = 10_000
"""Rows deleted per transaction: a prune of millions holds no long transaction or lock."""


# ---------------------------------------------------------------------- where a job is


@dataclass(frozen=True)
class ArchiveEntry:
    """The archive that holds a job's history (a row of `job_log_archives`)."""

    archive_id: int
    file_name: str
    archived_at: datetime

    def read_with(self, job_id: str) -> str:
        """The command that shows the job's history from the archive file."""
        return f"jobtrail replay --source {shlex.quote('file:' + self.file_name)} --job {job_id}"


class JobArchived(JobNotFound):
    """Job {job_id} is archived: archive {archive_id} holds its history, in file {file_name} (archived {archived_at}); read it with `{command}`."""  # noqa: E501

    def __init__(self, job_id: str, archive: ArchiveEntry) -> None:
        super().__init__(
            job_id=job_id,
            archive_id=archive.archive_id,
            file_name=archive.file_name,
            archived_at=archive.archived_at.astimezone(UTC).isoformat(timespec="seconds"),
            command=archive.read_with(job_id),
        )
        self.job_id, self.archive = job_id, archive

    def as_dict(self) -> dict[str, Any]:
        """What ``show --json`` and ``history --json`` print for an archived job."""
        return {
            "id": self.job_id,
            "archived": True,
            "archive_id": self.archive.archive_id,
            "file_name": self.archive.file_name,
            "archived_at": utc_iso(self.archive.archived_at),
            "read_with": self.archive.read_with(self.job_id),
        }


@dataclass(frozen=True)
class Whereabouts:
    """Where one job's row and history are."""

    job_id: str
    in_table: bool
    log_events: int
    archive: ArchiveEntry | None
    pruned_before: datetime | None
    """The latest cut of any prune (`pruned_before`)."""

    def pruned(self, completed_at: datetime | None) -> bool:
        """Whether a recorded prune explains that the row of a job that finished at
        ``completed_at`` is not in the table (else the row is missing for another reason)."""
        return (
            not self.in_table
            and completed_at is not None
            and self.pruned_before is not None
            and completed_at < self.pruned_before
        )

    def not_found(self) -> JobNotFound:
        """The error for a job with no row and no events: `JobArchived` if archived."""
        if self.archive is not None:
            return JobArchived(self.job_id, self.archive)
        return JobNotFound(job_id=self.job_id)


def where_is(conn: Connection, job_id: str) -> Whereabouts:
    """Whether the job has a row, how many events the log holds, which archive lists it."""
    in_table = conn.execute(select(exists().where(job.c.id == job_id))).scalar_one()
    count = conn.execute(
        select(func.count()).select_from(job_events).where(job_events.c.job_id == job_id)
    ).scalar_one()
    a, listed = job_log_archives, job_log_archive_jobs
    found = conn.execute(
        select(a.c.archive_id, a.c.file_name, a.c.archived_at)
        .join(listed, listed.c.archive_id == a.c.archive_id)
        .where(listed.c.job_id == job_id)
    ).first()
    archive = ArchiveEntry(*found) if found else None
    return Whereabouts(job_id, bool(in_table), int(count), archive, pruned_before(conn))


def whereabouts(engine: Engine, job_id: str) -> Whereabouts:
    """`where_is` in a connection of its own."""
    with translated_errors(), engine.connect() as conn:
        return where_is(conn, job_id)


def pruned_before(conn: Connection) -> datetime | None:
    """The latest ``finished_before`` any recorded prune used; None if there was none.

    Rows of jobs finished before it may have been pruned on purpose; a missing row of a
    job that finished later (or has not finished) is not explained by a prune.
    """
    query = select(control_log.c.data).where(control_log.c.action == PRUNED)
    cuts = [parse_time(data["finished_before"]) for data in conn.execute(query).scalars()]
    return max(cuts, default=None)


# ---------------------------------------------------------------------- the prune


def _prunable(finished_before: datetime) -> ColumnElement[bool]:
    """Rows of finished jobs (never queued or processing) that finished before the cut."""
    statuses = sorted(status.value for status in TERMINAL_STATUSES)
    return job.c.status.in_(statuses) & (job.c.completed_at < finished_before)


def count_prunable(engine: Engine, finished_before: datetime) -> int:
    """How many rows `prune_job_rows` would delete now (``--dry-run``)."""
    query = select(func.count()).select_from(job).where(_prunable(finished_before))
    with translated_errors(), engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def prune_job_rows(
    engine: Engine,
    finished_before: datetime,
    *,
    clock: Clock,
    reason: str | None = None,
    meta: Meta = SYSTEM,
    batch: int = BATCH_ROWS,
) -> int:
    """Delete the `job` rows of jobs that finished before ``finished_before``; their number.

    Batches of ``batch`` rows in primary-key order, one transaction each; the last one also
    records the prune in the control log. The log is not touched: `jobtrail rebuild`
    restores every pruned row. Idempotent: a second prune with the same cut deletes nothing.
    """
    limits.check_optional(limits.REASON, reason, "reason")
    check_meta(meta)
    if batch < 1:
        raise InvalidField(field="batch", reason=f"must be at least 1, not {batch}")
    total, after = 0, ""
    while True:
        with _write(engine) as conn:
            upper, deleted = _delete_batch(conn, finished_before, after, batch)
            total += deleted
            if upper is None:
                data = {"finished_before": utc_iso(finished_before), "rows": total}
                record_change(
                    conn,
                    action=PRUNED,
                    subject="job",
                    data=data,
                    actor=meta.actor,
                    reason=reason,
                    now=clock.now(),
                )
        log.debug("pruned %d job row(s) after id %r", deleted, after)
        if upper is None:
            log.info("pruned %d job row(s) finished before %s", total, utc_iso(finished_before))
            return total
        after = upper


def _delete_batch(
    conn: Connection, finished_before: datetime, after: str, batch: int
) -> tuple[str | None, int]:
    """Delete the next ``batch`` prunable rows with an id above ``after``: the last id of
    a full batch (None when this was the last one), and how many rows went."""
    where = _prunable(finished_before) & (job.c.id > after)
    upper = conn.execute(
        select(job.c.id).where(where).order_by(job.c.id).offset(batch - 1).limit(1)
    ).scalar()
    if upper is not None:
        where = where & (job.c.id <= upper)
    return upper, int(conn.execute(delete(job).where(where)).rowcount)


@contextlib.contextmanager
def _write(engine: Engine) -> Iterator[Connection]:
    """A write transaction (SQLite: BEGIN IMMEDIATE), the driver's errors translated."""
    with translated_errors(), engine.connect().execution_options(**WRITE) as conn, conn.begin():
        yield conn
