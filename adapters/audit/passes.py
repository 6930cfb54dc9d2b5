"""The two passes of a replay over SQL tables, and what a replay is scoped to.

Both runners use them: `replay` in one process, `parallel` cut into parts in worker
processes. They live here, below both, so that the dependency points one way
(``replay → parallel → passes``). A pass reads through `reads` and checks with `checks`;
it only adds to the `Report` it is given, so parts can be merged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobtrail.adapters.audit.checks.history import verify_job
from jobtrail.adapters.audit.checks.records import group_by_job
from jobtrail.adapters.audit.checks.report import Report, show
from jobtrail.adapters.audit.checks.row_diff import diff_rows
from jobtrail.adapters.audit.checks.seal_check import SealCheck, check_seals
from jobtrail.adapters.audit.reads import (
    EVERY_JOB,
    JobRange,
    LogTables,
    read_seals,
    stream_live_rows,
    stream_positions,
    stream_records,
)
from jobtrail.domain.canonical import utc_iso
from jobtrail.domain.errors import StorageError
from jobtrail.domain.seals import Seal
from sqlalchemy import Connection

RowSink = Callable[[dict[str, Any]], None]
Progress = Callable[[str, int | None, int], None]
"""``progress(stage, total, advance)``: a stage's total (None: unknown) and events done."""


@dataclass(frozen=True)
class Scope:
    """Which part of the log a replay covers: one job, the jobs touched since a position,
    and the moment the rebuilt rows are shown as of (None: now, and compared)."""

    job_id: str | None = None
    since: int | None = None
    as_of: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "since": self.since,
            "as_of": utc_iso(self.as_of) if self.as_of else None,
        }


def histories(
    conn: Connection,
    tables: LogTables,
    report: Report,
    scope: Scope,
    *,
    live: bool,
    on_row: RowSink | None = None,
    progress: Progress | None = None,
    total: int | None = None,
    jobs: JobRange = EVERY_JOB,
) -> None:
    """Verify the histories of the jobs in ``jobs``, and diff their rows with the live table."""
    results = (
        verify_job(records, scope.as_of)
        for records in group_by_job(stream_records(conn, tables, scope.job_id, scope.since, jobs))
    )
    compare = live and scope.as_of is None

    def shadow() -> Iterator[tuple[str, dict[str, Any] | None]]:
        for result in results:
            report.add_job(result)
            if progress:
                progress("histories", total, result.events + result.duplicates)
            if on_row is not None and result.row is not None:
                on_row(result.row)
            if compare and result.row is not None:
                report.rows_compared += 1
            yield result.job_id, result.row

    if not compare:
        for _ in shadow():
            pass
        return
    live_rows = stream_live_rows(conn, scope.job_id, scope.since, jobs)
    try:
        report.add(diff_rows(shadow(), live_rows, show))
    except ValueError as error:  # job ids not in byte order: the merge cannot be trusted
        raise StorageError(reason=str(error)) from error


def add_notes(report: Report, scope: Scope, *, live: bool) -> None:
    """What the report says about its scope, after the histories."""
    if not live or scope.as_of is not None:
        report.notes.append(
            "job table: the rows as of the given time were printed, not compared"
            if scope.as_of
            else "job table: rebuilt, not compared (no live table for this source)"
        )
    if scope.since is not None:
        report.notes.append(
            f"histories: only jobs with events after position {scope.since}, checked in full"
        )


def seal_pass(
    conn: Connection,
    tables: LogTables,
    report: Report,
    scope: Scope,
    progress: Progress | None,
    total: int | None,
) -> SealCheck | None:
    """Check the seals (from the last one before ``--since``); None when they cannot be."""
    if tables.seals is None:
        report.seals = {"checked": False, "reason": "seals are not published on the topic"}
        return None
    if scope.job_id is not None:
        report.seals = {"checked": False, "reason": "a single job was replayed (--job)"}
        return None
    seals = read_seals(conn, tables)
    start = _last_seal_upto(seals, scope.since)
    entries = stream_positions(conn, tables, start.position if start else 0)
    if progress:
        entries = _counted(entries, progress, total)
    check = check_seals(entries, seals, start)
    report.seals = {
        "checked": True,
        "seals": check.seals,
        "mismatched": len(check.problems),
        "from_position": start.position if start else 0,
        "events": check.events,
        "last_position": check.last_position,
        "digest": check.digest,
    }
    if start is not None:
        report.notes.append(
            f"seals: started from seal {start.seal_id} at position {start.position}, "
            "taken as verified"
        )
    report.add(check.problems)
    return check


def _last_seal_upto(seals: list[Seal], since: int | None) -> Seal | None:
    if since is None:
        return None
    earlier = [s for s in seals if s.position <= since]
    return earlier[-1] if earlier else None


def _counted(
    entries: Iterator[tuple[int, str]], progress: Progress, total: int | None
) -> Iterator[tuple[int, str]]:
    """``entries`` unchanged, reported to ``progress`` every thousand."""
    done = 0
    for entry in entries:
        yield entry
        done += 1
        if done == 1000:
            progress("seals", total, done)
            done = 0
    progress("seals", total, done)
