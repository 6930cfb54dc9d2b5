"""The archive's removal transaction (adapters/audit/archive_removal.py, migration 0015).

On PostgreSQL the events are removed while the file is written and the record goes in last:
an archive that fails while writing must remove nothing and leave no lock behind, and the
record must name the archive and the seal the function checked the jobs against.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jobtrail.adapters.audit import archive as archive_module
from jobtrail.adapters.audit import archive_removal
from jobtrail.adapters.audit.archive import Cut, archive
from jobtrail.adapters.audit.passes import Scope
from jobtrail.adapters.audit.replay import replay_database
from jobtrail.adapters.audit.seal import append_seal
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.sql.engine import translated_errors
from jobtrail.adapters.sql.schema import job_log_archive_jobs, job_log_archives
from jobtrail.domain.errors import ArchiveRefused, CannotWrite
from sqlalchemy import Connection, func, insert, select, text

from tests.helpers import SteppingClock
from tests.integration.test_archive import T0, events_of, finished_and_open, row_ids


@pytest.fixture
def trail(backend_url: str) -> Iterator[Jobtrail]:
    trail = connect(backend_url, clock=SteppingClock(T0))
    yield trail
    trail.close()


@pytest.fixture
def pg_trail(postgres_url: str) -> Iterator[Jobtrail]:
    trail = connect(postgres_url, clock=SteppingClock(T0))
    yield trail
    trail.close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "archives"
    path.mkdir()
    return path


def count(conn: Connection, table: Any) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_an_archive_failing_while_it_writes_removes_nothing(
    trail: Jobtrail, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the removal runs beside the read pass: it is cancelled and rolled back."""
    finished_and_open(trail, rounds=20)
    events, rows = events_of(trail), row_ids(trail)
    real, calls = archive_module.write_line, []

    def full_disk(f: Any, value: Any) -> None:
        calls.append(1)
        if len(calls) == 60:
            raise CannotWrite(path=folder / "a.jsonl", reason="no space left on device")
        real(f, value)

    monkeypatch.setattr(archive_module, "write_line", full_disk)
    with pytest.raises(CannotWrite, match="no space left"):
        archive(trail.engine, Cut(), folder / "a.jsonl", "test")

    assert events_of(trail) == events and row_ids(trail) == rows
    with trail.engine.connect() as conn:
        assert count(conn, job_log_archives) == count(conn, job_log_archive_jobs) == 0
    assert list(folder.iterdir()) == []
    monkeypatch.undo()
    done = archive(trail.engine, Cut(), folder / "a.jsonl", "test")  # no lock left behind
    assert done is not None and done.record.job_count == 80
    assert replay_database(trail.engine, Scope(), archives=folder).clean


@pytest.mark.postgres
def test_the_record_must_name_the_archive_and_seal_the_function_removed(
    pg_trail: Jobtrail,
) -> None:
    """In the transaction that removed archive N's events at seal S, only a record of N at
    S can go in; and an archive id already recorded cannot remove again."""
    ids = finished_and_open(pg_trail)
    first = append_seal(pg_trail.engine, "test")
    second = append_seal(pg_trail.engine, "test")
    events = events_of(pg_trail)
    of_finished = sum(job_id in ids["finished"] for job_id, _ in events.values())
    for archive_offset, seal_id in [(0, second.seal_id), (1, first.seal_id)]:
        with (
            pytest.raises(ArchiveRefused, match="not the one removed in this transaction"),
            translated_errors(),
            pg_trail.engine.begin() as conn,
        ):
            archive_id, removed = remove_through_the_function(conn, ids["finished"], first.seal_id)
            assert removed == of_finished
            insert_record(conn, archive_id + archive_offset, seal_id)
        assert events_of(pg_trail) == events  # rolled back

    with translated_errors(), pg_trail.engine.begin() as conn:
        recorded, _ = remove_through_the_function(conn, ids["finished"], first.seal_id)
        insert_record(conn, recorded, first.seal_id)
    assert len(events_of(pg_trail)) == len(events) - of_finished
    for archive_id, seal_id, refusal in [
        (recorded, first.seal_id, f"archive {recorded} is recorded already"),
        (recorded + 1, 999, "there is no seal 999"),
    ]:
        with (
            pytest.raises(ArchiveRefused, match=refusal),
            translated_errors(),
            pg_trail.engine.begin() as conn,
        ):
            conn.execute(FUNCTION, {"a": archive_id, "s": seal_id})


FUNCTION = text("SELECT * FROM jobtrail_archive_events(:a, :s)")


def remove_through_the_function(
    conn: Connection, job_ids: list[str], seal_id: int
) -> tuple[int, int]:
    """List ``job_ids`` under a fresh archive id and remove their events: the archive id and
    how many events went."""
    archive_id = int(conn.execute(archive_removal.NEXT_ARCHIVE_ID).scalar_one())
    conn.execute(
        insert(job_log_archive_jobs), [{"job_id": j, "archive_id": archive_id} for j in job_ids]
    )
    removed = conn.execute(FUNCTION, {"a": archive_id, "s": seal_id})
    return archive_id, len(removed.all())


def insert_record(conn: Connection, archive_id: int, seal_id: int) -> None:
    conn.execute(
        insert(job_log_archives).values(
            archive_id=archive_id,
            seal_id=seal_id,
            seal_position=1,
            file_name="a.jsonl",
            file_digest="0" * 64,
            file_bytes=1,
            event_count=1,
            job_count=1,
            first_position=1,
            last_position=1,
            events_digest="0" * 64,
            kept_count=0,
            kept_digest="0" * 64,
            actor="test",
        )
    )
