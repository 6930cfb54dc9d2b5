"""Replay: verify a log read from the database, an export file or a staged Kafka topic.

Read-only. On the database every read runs in one snapshot (REPEATABLE READ on
PostgreSQL, one read transaction on SQLite), so the seal pass, the history pass and the
live table agree with each other even while jobs keep running. The passes are in
`passes`; a large PostgreSQL log is cut into parts for worker processes by `parallel`.
"""

from __future__ import annotations

from pathlib import Path

from jobtrail.adapters.audit.archive_files import check_archive_files
from jobtrail.adapters.audit.checks.records import Problem
from jobtrail.adapters.audit.checks.report import Report
from jobtrail.adapters.audit.checks.seal_check import SealCheck
from jobtrail.adapters.audit.export_format import Manifest
from jobtrail.adapters.audit.parallel import default_workers, replay_in_parallel
from jobtrail.adapters.audit.passes import (
    Progress,
    RowSink,
    Scope,
    add_notes,
    histories,
    seal_pass,
)
from jobtrail.adapters.audit.reads import LIVE, LogTables, count_events, read_archives
from jobtrail.adapters.sql.engine import is_postgres, translated_errors
from sqlalchemy import Connection, Engine


def replay_database(
    engine: Engine,
    scope: Scope,
    *,
    on_row: RowSink | None = None,
    progress: Progress | None = None,
    max_problems: int = 10_000,
    workers: int | None = None,
    archives: Path | None = None,
) -> Report:
    """Replay the database's log.

    ``workers``: processes verifying histories (PostgreSQL, whole log or ``since``, no
    ``on_row``); None picks by the log's size. The report does not depend on it.
    ``archives``: the folder of the archive files, checked against their records and merged
    back into the seal pass (in this process).
    """
    report = Report(source="db", scope=scope.as_dict(), max_problems=max_problems)
    snapshot = {"isolation_level": "REPEATABLE READ"} if is_postgres(engine) else {}
    with (
        translated_errors(),
        engine.connect().execution_options(**snapshot) as conn,
        conn.begin(),
    ):
        if archives is not None:
            _replay_with_archives(conn, report, scope, archives, on_row, progress)
            return report
        parallel = is_postgres(engine) and scope.job_id is None and on_row is None
        count = (workers or default_workers(conn)) if parallel else 1
        if count > 1:
            replay_in_parallel(conn, report, scope, count, progress)
        else:
            _replay(conn, LIVE, report, scope, live=True, on_row=on_row, progress=progress)
    return report


def _replay_with_archives(
    conn: Connection,
    report: Report,
    scope: Scope,
    directory: Path,
    on_row: RowSink | None,
    progress: Progress | None,
) -> None:
    files = check_archive_files(directory, read_archives(conn, LIVE), report)
    try:
        total = count_events(conn, LIVE) if progress else None
        seal_pass(conn, LIVE, report, scope, progress, total, archived=files.entries())
        report.seals["archives"].update(files_found=files.checked, events_in_files=files.events)
        histories(
            conn, LIVE, report, scope, live=True, on_row=on_row, progress=progress, total=total
        )
        add_notes(report, scope, live=True)
    finally:
        files.close()


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
    """Both passes in this process, in the caller's transaction."""
    total = count_events(conn, tables) if progress else None
    check = seal_pass(conn, tables, report, scope, progress, total)
    histories(conn, tables, report, scope, live=live, on_row=on_row, progress=progress, total=total)
    add_notes(report, scope, live=live)
    return check


def _manifest_problems(manifest: Manifest, check: SealCheck) -> list[Problem]:
    """An export's manifest against what its lines fold into (a file cut or padded)."""
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
