"""Retention as jobs: archive and prune run by a worker, so a jobtrail schedule can run them.

A team adds them to its processors and schedules them like any job type::

    registry = Registry([*jobtrail.retention_processors()])

    jobtrail schedule add prune-nightly --cron "15 3 * * *" jobtrail.prune \\
        --payload '{"finished_before": "30d"}'
    jobtrail schedule add archive-monthly --cron "0 4 1 * *" jobtrail.archive \\
        --payload '{"before": "90d", "directory": "/var/lib/jobtrail/archives"}'

Each connects to the database it is given, by default the one the worker's environment
names (``JOBTRAIL_DATABASE_URL``). An archive's file is named after its job
(``archive-JOB_ID.jsonl``): an attempt retried after a crash finds the file the first one
left without a record, and replaces it. A payload that cannot be used is `InvalidInput`
(the requester's mistake, not retried).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobtrail.domain import moments
from jobtrail.domain.errors import InvalidInput
from jobtrail.domain.job import Meta
from jobtrail.processors.base import BaseProcessor, JobContext, JobView

PRUNE = "jobtrail.prune"
ARCHIVE = "jobtrail.archive"


def retention_processors(database_url: str | None = None) -> list[BaseProcessor]:
    """The `jobtrail.prune` and `jobtrail.archive` processors, on ``database_url`` (default:
    the environment's)."""
    return [PruneProcessor(database_url), ArchiveProcessor(database_url)]


class _OnDatabase(BaseProcessor):
    """Connects on first use (never at import or in a worker that runs no such job)."""

    def __init__(self, database_url: str | None) -> None:
        self.database_url = database_url
        self._trail: Any = None

    def trail(self) -> Any:
        if self._trail is None:
            from jobtrail.adapters.bootstrap import connect
            from jobtrail.adapters.config import Settings

            self._trail = connect(self.database_url or Settings.from_env().database_url)
        return self._trail


class PruneProcessor(_OnDatabase):
    """``{"finished_before": "30d"}``: the finished rows older than that leave the job table."""

    job_type = PRUNE

    def process(self, job: JobView, ctx: JobContext) -> dict[str, Any]:
        from jobtrail.adapters.sql.retention import prune_job_rows

        cut = moment(job.payload, "finished_before")
        trail = self.trail()
        rows = prune_job_rows(trail.engine, cut, clock=trail.service.clock, meta=_meta(job))
        return {"finished_before": cut.isoformat(), "rows": rows}


class ArchiveProcessor(_OnDatabase):
    """``{"before": "90d", "directory": "…"}``: the jobs finished before that are archived
    into ``directory/archive-JOB_ID.jsonl``."""

    job_type = ARCHIVE

    def process(self, job: JobView, ctx: JobContext) -> dict[str, Any]:
        from jobtrail.adapters.audit.archive import Cut, archive

        cut = moment(job.payload, "before")
        directory = Path(text(job.payload, "directory"))
        if not directory.is_dir():
            raise InvalidInput(f"payload: directory {directory} does not exist")
        out = directory / f"archive-{job.id}.jsonl"
        done = archive(self.trail().engine, Cut(before=cut), out, _meta(job).actor)
        if done is None:
            return {"archived": None, "before": cut.isoformat()}
        record = done.record
        return {
            "archive_id": record.archive_id,
            "file": str(out),
            "events": record.event_count,
            "jobs": record.job_count,
            "sha256": record.file_digest,
        }


def _meta(job: JobView) -> Meta:
    return Meta(actor=f"{job.job_type}:{job.id}")


def text(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"payload: {key!r} must be a non-empty string")
    return value


def moment(payload: Mapping[str, Any], key: str) -> datetime:
    value = text(payload, key)
    try:
        return moments.moment_or_age(value, datetime.now(UTC))
    except ValueError as error:
        raise InvalidInput(f"payload: {key!r}: {value!r} {error}") from None
