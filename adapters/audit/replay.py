"""Replay: verify a log read from the database, an export file or a staged Kafka topic.

Read-only. On the database every read runs in one snapshot (REPEATABLE READ on
PostgreSQL, one read transaction on SQLite), so the seal pass, the history pass and the
live table agree with each other even while jobs keep running.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobtrail.adapters.audit.reads import (
    EVERY_JOB,
    LIVE,
    JobRange,
    LogTables,
    count_events,
    read_seals,
    stream_live_rows,
    stream_positions,
    stream_records,
)
from jobtrail.adapters.audit.verify import (
    Problem,
    Report,
    SealCheck,
    check_seals,
    diff_rows,
    group_by_job,
    verify_job,
)
from jobtrail.adapters.sql.engine import is_postgres, translated_errors
from jobtrail.domain.errors import StorageError
from jobtrail.domain.events import utc_iso
from jobtrail.domain.seals import Seal
from sqlalchemy import Connection, Engine

RowSink = Callable[[dict[str, Any]], None]
Progress = Callable[[str, int | None, int], None]
"""``progress(stage, total, advance)``: a stage's total (None: unknown) and events done."""


@dataclass(frozen=True)
class Scope:
    job_id: str | None = None
    since: int | None = None
    as_of: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "since": self.since,
            "as_of": utc_iso(self.as_of) if self.as_of else None,
        }


@dataclass(frozen=True)
class Manifest:
    """What an export file says about itself (its last line)."""

    count: int
    last_position: int
    digest: str


def show(value: Any) -> Any:
    """A column value as it appears in a JSON report."""
    return utc_iso(value) if isinstance(value, datetime) else value


def replay_database(
    engine: Engine,
    scope: Scope,
    *,
    on_row: RowSink | None = None,
    progress: Progress | None = None,
    max_problems: int = 10_000,
    workers: int | None = None,
) -> Report:
    """Replay the database's log.

    ``workers``: processes verifying histories (PostgreSQL, whole log or ``since``, no
    ``on_row``); None picks by the log's size. The report does not depend on it.
    """
    from jobtrail.adapters.audit.parallel import default_workers, replay_in_parallel  # imports this

    report = Report(source="db", scope=scope.as_dict(), max_problems=max_problems)
    snapshot = {"isolation_level": "REPEATABLE READ"} if is_postgres(engine) else {}
    with (
        translated_errors(),
        engine.connect().execution_options(**snapshot) as conn,
        conn.begin(),
    ):
        parallel = is_postgres(engine) and scope.job_id is None and on_row is None
        count = (workers or default_workers(conn)) if parallel else 1
        if count > 1:
            replay_in_parallel(conn, report, scope, count, progress)
        else:
            _replay(conn, LIVE, report, scope, live=True, on_row=on_row, progress=progress)
    return report


def replay_staged(
    engine: Engine,
    tables: LogTables,
    report: Report,
    scope: Scope,
    *,
    manifest: Manifest | None = None,
    on_row: RowSink | None = None,
    progress: Progress | None = None,
) -> Report:
    """Replay a file's or a topic's events after they were loaded into a staging database."""
    with engine.connect() as conn, conn.begin():
        check = _replay(conn, tables, report, scope, live=False, on_row=on_row, progress=progress)
    if manifest is not None and check is not None:
        report.add(_manifest_problems(manifest, check))
    return report


def _replay(
    conn: Connection,
    tables: LogTables,
    report: Report,
    scope: Scope,
    *,
    live: bool,
    on_row: RowSink | None,
    progress: Progress | None,
) -> SealCheck | None:
    total = count_events(conn, tables) if progress else None
    check = seal_pass(conn, tables, report, scope, progress, total)
    histories(conn, tables, report, scope, live=live, on_row=on_row, progress=progress, total=total)
    add_notes(report, scope, live=live)
    return check


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
    done = 0
    for entry in entries:
        yield entry
        done += 1
        if done == 1000:
            progress("seals", total, done)
            done = 0
    progress("seals", total, done)


def _manifest_problems(manifest: Manifest, check: SealCheck) -> list[Problem]:
    found = (check.events, check.last_position, check.digest)
    if found == (manifest.count, manifest.last_position, manifest.digest):
        return []
    return [
        Problem(
            "manifest_mismatch",
            f"the file holds {check.events} events up to position {check.last_position}; "
            f"its manifest says {manifest.count} up to {manifest.last_position}"
            + ("" if check.digest == manifest.digest else ", with another digest"),
            position=manifest.last_position,
        )
    ]
