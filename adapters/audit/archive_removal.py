"""The transaction that takes an archive's jobs out of the log: record, list, remove, compare.

It holds `job_log_archives` locked from its start (one archive at a time, and the one it
continues still the newest) to its commit, and commits the record, the list of jobs, the
events removed and the rows removed together, or nothing.

On PostgreSQL it runs beside the read pass that writes the file: its archive id is taken
from the sequence first, and a thread lists the jobs and removes their events through
`jobtrail_archive_events(archive_id, seal_id)` (migration 0015) while the file is being
written, since the removal costs about what the read pass does; the record, written once
the file is in place, then goes in last, and the function's setting lets it name only that
archive and seal. The transaction's snapshot is never the read pass's: the read pass sees
the log as it was, whatever this transaction has removed and not committed. On SQLite
(one writer; the removal is quick) the steps run in order, record first.

Either way the removed events are folded and compared with the file's (count and digest):
any difference, and the transaction rolls back.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from jobtrail.adapters.audit.reads import stream_query
from jobtrail.adapters.sql.engine import WRITE, is_postgres, translated_errors
from jobtrail.adapters.sql.schema import job, job_events, job_log_archive_jobs, job_log_archives
from jobtrail.domain.errors import ArchiveRefused
from jobtrail.domain.seals import ArchiveRecord, RunningDigest
from sqlalchemy import Connection, Engine, Select, delete, func, insert, literal, select, text

log = logging.getLogger("jobtrail.archive")

NEXT_ARCHIVE_ID = text("SELECT nextval(pg_get_serial_sequence('job_log_archives', 'archive_id'))")


class Removal:
    """One archive's removal transaction: ``start`` it beside the read pass (PostgreSQL),
    then `finish` it with the record of the file written."""

    def __init__(self, conn: Connection, chosen: Select[Any], seal_id: int) -> None:
        self.conn = conn
        self.chosen = chosen
        self.seal_id = seal_id
        self.archive_id = 0
        self.finished = False
        self._done: Future[tuple[int, RunningDigest]] | None = None

    def start(self) -> None:
        """List the jobs and remove their events in a thread of its own."""
        self.archive_id = int(self.conn.execute(NEXT_ARCHIVE_ID).scalar_one())
        done: Future[tuple[int, RunningDigest]] = Future()

        def run() -> None:
            try:
                removed = _list_and_remove(self.conn, self.archive_id, self.chosen, self.seal_id)
                done.set_result(removed)
            except BaseException as error:  # handed to the thread that waits for it
                done.set_exception(error)

        threading.Thread(target=run, name="jobtrail-archive-removal", daemon=True).start()
        self._done = done

    def stop(self) -> None:
        """Cancel the removal's statement if it still runs, and wait for its thread: the
        connection is then free to roll back."""
        if self._done is None or self._done.done():
            return
        driver = self.conn.connection.driver_connection
        cancel = getattr(driver, "cancel_safe", None) or driver.cancel  # type: ignore[union-attr]
        cancel()
        try:
            self._done.exception()
        finally:
            self._done = None

    def removed(self) -> tuple[int, RunningDigest]:
        """How many jobs were listed and the events removed, once the thread is done."""
        if self._done is None:
            raise RuntimeError("the removal was not started")
        return self._done.result()


@contextmanager
def removal(engine: Engine, after: int, chosen: Select[Any], seal_id: int) -> Iterator[Removal]:
    """The removal transaction, started on PostgreSQL; it commits only if `finish` ran and
    the block ended without an error, and rolls back otherwise."""
    with translated_errors(), engine.connect().execution_options(**WRITE) as conn:
        transaction = conn.begin()
        if is_postgres(conn):
            conn.execute(text("LOCK TABLE job_log_archives IN EXCLUSIVE MODE"))
        latest = conn.execute(select(func.max(job_log_archives.c.archive_id))).scalar_one()
        if (latest or 0) != after:
            raise ArchiveRefused(reason="another archive was made meanwhile; run it again")
        removing = Removal(conn, chosen, seal_id)
        if is_postgres(conn):
            removing.start()
        try:
            yield removing
        finally:
            removing.stop()
        if removing.finished:
            transaction.commit()
        else:
            transaction.rollback()


def finish(
    removing: Removal, record: ArchiveRecord, before: datetime | None, actor: str
) -> ArchiveRecord:
    """Record the archive and check what was removed is what the file holds."""
    conn = removing.conn
    if removing.archive_id:  # PostgreSQL: removed already, recorded last
        listed, removed = removing.removed()
        compare_removed(removed, listed, record)
        archive_id = _insert_record(conn, record, before, actor, removing.archive_id)
    else:
        archive_id = _insert_record(conn, record, before, actor)
        listed, removed = _list_and_remove(conn, archive_id, removing.chosen, removing.seal_id)
        compare_removed(removed, listed, record)
    removing.finished = True
    return ArchiveRecord(**{**record.__dict__, "archive_id": archive_id})


def compare_removed(removed: RunningDigest, listed: int, record: ArchiveRecord) -> None:
    """The jobs listed and the events removed must be those written to the file."""
    if listed != record.job_count:
        raise ArchiveRefused(
            reason=f"{listed} jobs are finished now, {record.job_count} were written"
        )
    if (removed.count, removed.digest) != (record.event_count, record.events_digest):
        raise ArchiveRefused(
            reason=f"the events removed ({removed.count}) are not the ones written to "
            f"{record.file_name} ({record.event_count}); nothing was removed"
        )


def _list_and_remove(
    conn: Connection, archive_id: int, chosen: Select[Any], seal_id: int
) -> tuple[int, RunningDigest]:
    """List the chosen jobs under ``archive_id``, remove their events (folded in position
    order) and their rows; returns how many jobs were listed and the fold."""
    started = time.perf_counter()
    conn.execute(
        insert(job_log_archive_jobs).from_select(
            ["job_id", "archive_id"],
            chosen.add_columns(literal(archive_id, job_log_archive_jobs.c.archive_id.type)),
        )
    )
    listed = conn.execute(select(func.count()).select_from(_listed(archive_id).subquery()))
    jobs = int(listed.scalar_one())
    removed = _remove_events(conn, archive_id, seal_id)
    conn.execute(delete(job).where(job.c.id.in_(_listed(archive_id))))
    took = time.perf_counter() - started
    log.info("archive step: listed and removed %d jobs in %.1f s", jobs, took)
    return jobs, removed


def _remove_events(conn: Connection, archive_id: int, seal_id: int) -> RunningDigest:
    """Remove the listed jobs' events through the log's narrow path; their fold."""
    removed = RunningDigest()
    if is_postgres(conn):
        gone = func.jobtrail_archive_events(archive_id, seal_id).table_valued(
            "event_position", "event_hash"
        )
        query = select(gone.c.event_position, gone.c.event_hash).order_by(gone.c.event_position)
        for position, event_hash in stream_query(conn, query):
            removed.add(int(position), str(event_hash))
        return removed
    e = job_events
    listed = _listed(archive_id)
    query = select(e.c.position, e.c.hash).where(e.c.job_id.in_(listed)).order_by(e.c.position)
    for position, event_hash in conn.execute(query):
        removed.add(int(position), str(event_hash))
    conn.execute(delete(e).where(e.c.job_id.in_(listed)))
    return removed


def _insert_record(
    conn: Connection,
    record: ArchiveRecord,
    before: datetime | None,
    actor: str,
    archive_id: int | None = None,
) -> int:
    values = {k: v for k, v in record.__dict__.items() if k != "archive_id"}
    values.update(finished_before=before, actor=actor)
    if archive_id is not None:
        values["archive_id"] = archive_id
    inserted = conn.execute(
        insert(job_log_archives).returning(job_log_archives.c.archive_id), values
    )
    return int(inserted.scalar_one())


def _listed(archive_id: int) -> Select[Any]:
    a = job_log_archive_jobs
    return select(a.c.job_id).where(a.c.archive_id == archive_id)
