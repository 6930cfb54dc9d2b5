"""The two passes of a replay over SQL tables, and what a replay is scoped to.

Both runners use them: `replay` in one process, `parallel` cut into parts in worker
processes. They live here, below both, so that the dependency points one way
(``replay → parallel → passes``). A pass reads through `reads` and checks with `checks`;
it only adds to the `Report` it is given, so parts can be merged.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobtrail.adapters.audit.checks.history import verify_job
from jobtrail.adapters.audit.checks.records import Problem, group_by_job
from jobtrail.adapters.audit.checks.report import Report, show
from jobtrail.adapters.audit.checks.row_diff import PrunedRows, diff_rows
from jobtrail.adapters.audit.checks.seal_check import SealCheck, check_seals
from jobtrail.adapters.audit.reads import (
    EVERY_JOB,
    JobRange,
    LogTables,
    read_archives,
    read_seals,
    stream_live_rows,
    stream_positions,
    stream_records,
)
from jobtrail.adapters.sql.retention import pruned_before
from jobtrail.domain.canonical import utc_iso
from jobtrail.domain.errors import StorageError
from jobtrail.domain.seals import ArchiveRecord, RunningDigest, Seal
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
    cut = pruned_before(conn)
    pruned = PrunedRows(cut) if cut is not None else None
    try:
        report.add(diff_rows(shadow(), live_rows, show, pruned))
    except ValueError as error:  # job ids not in byte order: the merge cannot be trusted
        raise StorageError(reason=str(error)) from error
    if pruned is not None:
        report.rows_pruned += pruned.count
        report.pruned_before = cut


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
    archived: Iterable[tuple[int, str]] | None = None,
) -> SealCheck | None:
    """Check the seals (from the last one before ``--since``); None when they cannot be.

    After an archive, the seals up to its cut cover events that are no longer in the log.
    Given the archived events (``archived``, read from the archive files) they are merged
    back in and every seal is checked from the start; without them, what is left up to the
    last archive's cut is compared with the digest that archive recorded, and the seals
    after it are checked on from its seal.
    """
    if tables.seals is None:
        report.seals = {"checked": False, "reason": "seals are not published on the topic"}
        return None
    if scope.job_id is not None:
        report.seals = {"checked": False, "reason": "a single job was replayed (--job)"}
        return None
    seals = read_seals(conn, tables)
    records = read_archives(conn, tables)
    start = _last_seal_upto(seals, scope.since)
    why = "taken as verified"
    kept: list[Problem] = []
    if archived is not None:
        start = None
        entries: Iterator[tuple[int, str]] = heapq.merge(
            archived, stream_positions(conn, tables, 0)
        )
    else:
        if records and (start is None or start.position < records[-1].seal_position):
            start = _seal_of(seals, records[-1])
            kept = _kept_problems(conn, tables, records[-1])
            why = f"the cut of archive {records[-1].archive_id} (what it left there was checked)"
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
        "archives": _archives_summary(records, files=archived is not None),
    }
    if start is not None:
        report.notes.append(
            f"seals: started from seal {start.seal_id} at position {start.position}, {why}"
        )
    report.add(kept)
    report.add(check.problems)
    return check


def _seal_of(seals: list[Seal], record: ArchiveRecord) -> Seal:
    for seal in seals:
        if seal.seal_id == record.seal_id:
            return seal
    return Seal(record.seal_id, record.seal_position, -1, "(the seal is missing)")


def _kept_problems(conn: Connection, tables: LogTables, record: ArchiveRecord) -> list[Problem]:
    """What the log holds up to the last archive's cut, against what that archive left."""
    left = RunningDigest()
    for position, event_hash in stream_positions(conn, tables, 0, record.seal_position):
        left.add(position, event_hash)
    if (left.count, left.digest) == (record.kept_count, record.kept_digest):
        return []
    if left.count < record.kept_count:
        change = f"{record.kept_count - left.count} event(s) fewer: events were deleted"
    elif left.count > record.kept_count:
        change = f"{left.count - record.kept_count} event(s) more: events were inserted"
    else:
        change = "the same number of events but another digest: events were changed"
    return [
        Problem(
            "archive_kept_mismatch",
            f"archive {record.archive_id} left {record.kept_count} events up to position "
            f"{record.seal_position}; the log now has {change}",
            position=record.seal_position,
        )
    ]


def _archives_summary(records: list[ArchiveRecord], *, files: bool) -> dict[str, Any]:
    return {
        "records": len(records),
        "events": sum(r.event_count for r in records),
        "jobs": sum(r.job_count for r in records),
        "files_checked": files,
    }


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
