"""`jobtrail replay --archives DIR`: the archive files checked against their records.

Each record names its file, its digest and size, and what the file holds (events, jobs,
positions, the events' digest). A file is looked up by the name recorded, then, if that
is missing, by its digest (a renamed file still counts). What can be wrong is a problem of
the report, named with the archive and the file: missing, not the recorded bytes (edited,
cut short, or another archive's file), lines that are no event, a history whose hash chain
breaks, or contents that do not fold into the record. The archived events are then merged
back into the seal pass, so the seals before each cut are checked again from the start.
"""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from jobtrail.adapters.audit.archive import file_digest, is_archive_file
from jobtrail.adapters.audit.checks.records import Problem
from jobtrail.adapters.audit.checks.report import Report
from jobtrail.adapters.audit.checks.seal_check import check_seals
from jobtrail.adapters.audit.file_source import ExportUnreadable, load_file
from jobtrail.adapters.audit.passes import Scope, histories
from jobtrail.adapters.audit.reads import stream_positions
from jobtrail.adapters.audit.staging import Loaded
from jobtrail.domain.seals import ArchiveRecord


@dataclass
class ArchiveFiles:
    """The archive files found for the records, loaded into staging (close when done)."""

    loaded: list[Loaded] = field(default_factory=list)
    checked: int = 0
    events: int = 0

    def entries(self) -> Iterator[tuple[int, str]]:
        """``(position, hash)`` of every archived event, in position order."""
        streams = []
        for loaded in self.loaded:
            conn = loaded.staging.engine.connect()
            streams.append(stream_positions(conn, loaded.tables))
        return heapq.merge(*streams)

    def close(self) -> None:
        for loaded in self.loaded:
            loaded.staging.close()


def check_archive_files(
    directory: Path, records: list[ArchiveRecord], report: Report
) -> ArchiveFiles:
    """Check every record's file in ``directory``; problems go to ``report``."""
    files = ArchiveFiles()
    by_digest = _digests(directory) if directory.is_dir() else {}
    owners = {r.file_digest: r.archive_id for r in records}
    used: set[Path] = set()
    for record in records:
        path = _find(directory, record, by_digest)
        if path is None:
            report.add([_problem(record, "archive_missing", f"is not in {directory}")])
            continue
        used.add(path)
        _check_bytes(record, path, owners, report)
        loaded = _load(record, path, report)
        if loaded is not None:
            files.loaded.append(loaded)
            files.events += _check_contents(record, path, loaded, report)
            files.checked += 1
    recorded = {r.file_digest for r in records}
    for digest, path in sorted(by_digest.items(), key=lambda item: item[1]):
        if digest not in recorded and path not in used and is_archive_file(path):
            report.notes.append(
                f"archives: {path.name} is an archive file no record names "
                "(left by an interrupted archive); it was not checked"
            )
    return files


def _digests(directory: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            with contextlib.suppress(OSError):
                found.setdefault(file_digest(path)[0], path)
    return found


def _find(directory: Path, record: ArchiveRecord, by_digest: dict[str, Path]) -> Path | None:
    named = directory / record.file_name
    if named.is_file():
        return named
    return by_digest.get(record.file_digest)


def _problem(record: ArchiveRecord, kind: str, what: str) -> Problem:
    return Problem(
        kind,
        f"archive {record.archive_id} ({record.file_name}) {what}",
        position=record.last_position,
    )


def _check_bytes(record: ArchiveRecord, path: Path, owners: dict[str, int], report: Report) -> None:
    digest, size = file_digest(path)
    if (digest, size) == (record.file_digest, record.file_bytes):
        return
    other = owners.get(digest)
    if other is not None:
        what = f"is archive {other}'s file ({path.name}), not its own"
    else:
        what = (
            f"{path.name} is not the file recorded: {size:,} bytes, sha256 {digest[:16]}…, "
            f"recorded {record.file_bytes:,} bytes, sha256 {record.file_digest[:16]}… "
            "(edited or cut short)"
        )
    report.add([_problem(record, "archive_altered", what)])


def _load(record: ArchiveRecord, path: Path, report: Report) -> Loaded | None:
    try:
        loaded = load_file(path)
    except ExportUnreadable as error:
        report.add([_problem(record, "archive_unreadable", f"cannot be read: {error}")])
        return None
    report.add(
        _problem(record, problem.kind, f"line problem: {problem.reason}")
        for problem in loaded.problems
    )
    return loaded


def _check_contents(record: ArchiveRecord, path: Path, loaded: Loaded, report: Report) -> int:
    """Every history in the file verified, and the file folded against the record."""
    part = Report(source=str(path), scope={}, max_problems=report.max_problems)
    with loaded.staging.engine.connect() as conn:
        histories(conn, loaded.tables, part, Scope(), live=False)
        fold = check_seals(stream_positions(conn, loaded.tables), [])
    report.counts.update(part.counts)
    room = max(report.max_problems - len(report.problems), 0)
    report.problems.extend(part.problems[:room])
    found = (fold.events, part.jobs, fold.last_position, fold.digest)
    expected = (record.event_count, record.job_count, record.last_position, record.events_digest)
    if found != expected:
        report.add(
            [
                _problem(
                    record,
                    "archive_record_mismatch",
                    f"holds {fold.events:,} events of {part.jobs:,} jobs up to position "
                    f"{fold.last_position}; its record says {record.event_count:,} of "
                    f"{record.job_count:,} up to {record.last_position}"
                    + ("" if fold.digest == record.events_digest else ", with another digest"),
                )
            ]
        )
    seal_id = (loaded.archive or {}).get("seal_id")
    if seal_id != record.seal_id:
        report.add(
            [_problem(record, "archive_record_mismatch", f"says it is cut at seal {seal_id}")]
        )
    return fold.events
