"""Replay of a large PostgreSQL log by several processes that share one snapshot.

Verifying an event costs more Python than reading it, so one process cannot keep up with
the read. The replaying transaction exports its snapshot (``pg_export_snapshot()``); each
worker process imports it (``SET TRANSACTION SNAPSHOT``), so every worker sees exactly the
log and the live table the replaying transaction sees, while jobs keep running. The work
is cut into parts: the seal pass, and the histories (with their rows' diff) of ranges of
job ids. Workers take parts as they come free; the parts' reports are merged in log order
(seals, then the ranges in id order), which gives the report one process would give.

The passes come from `passes`; `replay` calls this module, never the other way round.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import re
from dataclasses import dataclass
from typing import Any

from jobtrail.adapters.audit.checks.report import Report
from jobtrail.adapters.audit.passes import Progress, Scope, add_notes, histories, seal_pass
from jobtrail.adapters.audit.reads import LIVE, JobRange, count_events, split_jobs
from jobtrail.adapters.sql import engine as database
from jobtrail.domain.errors import StorageError
from sqlalchemy import Connection, text

log = logging.getLogger(__name__)

PARALLEL_FROM = 200_000
"""Events (PostgreSQL's estimate) from which a replay uses worker processes by default:
starting one costs about half a second."""
MAX_WORKERS = 4
"""By default one worker more than cores (at most this many): each worker also waits for its
PostgreSQL backend, which reads and sends the rows."""
PARTS_PER_WORKER = 4
"""More parts than workers, so that a worker that is given a slow range does not hold the
others up at the end."""
PROGRESS_EVERY = 10_000
_SNAPSHOT_ID = re.compile(r"[0-9A-Fa-f]+-[0-9A-Fa-f]+(-[0-9A-Fa-f]+)?")


@dataclass(frozen=True)
class Part:
    """One piece of a replay: the seal pass (``jobs`` None) or a range of jobs."""

    index: int
    jobs: JobRange | None


def default_workers(conn: Connection) -> int:
    """The processes a whole-log replay of this database uses when not told."""
    if not database.is_postgres(conn):
        return 1
    estimate = conn.execute(
        text("SELECT reltuples FROM pg_class WHERE oid = 'job_events'::regclass")
    ).scalar_one()
    if float(estimate) < PARALLEL_FROM:
        return 1
    return min((os.cpu_count() or 1) + 1, MAX_WORKERS)


def replay_in_parallel(
    conn: Connection,
    report: Report,
    scope: Scope,
    workers: int,
    progress: Progress | None,
) -> None:
    """Replay the whole log (or ``--since``) in ``workers`` processes; fills ``report``."""
    snapshot = str(conn.execute(text("SELECT pg_export_snapshot()")).scalar_one())
    url = conn.engine.url.render_as_string(hide_password=False)
    context = multiprocessing.get_context("spawn")
    todo: Any = context.Queue()
    done: Any = context.Queue()
    todo.put(Part(0, None))  # the seal pass first: one long part
    args = (url, snapshot, scope, report.max_problems, todo, done)
    processes = [context.Process(target=work, args=args, daemon=True) for _ in range(workers)]
    for process in processes:  # they start (import) while the ranges are chosen
        process.start()
    total = count_events(conn, LIVE) if progress else None
    ranges = split_jobs(conn, workers * PARTS_PER_WORKER)
    for index, jobs in enumerate(ranges, start=1):
        todo.put(Part(index, jobs))
    for _ in range(workers):
        todo.put(None)
    parts = 1 + len(ranges)
    try:
        reports = _collect(done, processes, parts, progress, total)
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
    for index in range(parts):
        report.merge(reports[index])
    add_notes(report, scope, live=True)


def _collect(
    done: Any,
    processes: list[Any],
    count: int,
    progress: Progress | None,
    total: int | None,
) -> dict[int, Report]:
    reports: dict[int, Report] = {}
    while len(reports) < count:
        try:
            message = done.get(timeout=1)
        except queue.Empty:
            dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            if dead:
                raise StorageError(
                    reason=f"a replay worker stopped unexpectedly (exit code {dead[0]})"
                ) from None
            continue
        match message:
            case ("progress", stage, advance):
                if progress:
                    progress(stage, total, advance)
            case ("done", index, part):
                reports[index] = part
            case ("failed", reason):
                raise StorageError(reason=f"a replay worker failed: {reason}")
    return reports


class _Batched:
    """Progress sent to the replaying process in batches (one message per event is too many)."""

    def __init__(self, done: Any) -> None:
        self.done = done
        self.pending: dict[str, int] = {}

    def __call__(self, stage: str, _total: int | None, advance: int) -> None:
        self.pending[stage] = self.pending.get(stage, 0) + advance
        if self.pending[stage] >= PROGRESS_EVERY:
            self.flush()

    def flush(self) -> None:
        for stage, advance in self.pending.items():
            if advance:
                self.done.put(("progress", stage, advance))
        self.pending.clear()


def work(url: str, snapshot: str, scope: Scope, max_problems: int, todo: Any, done: Any) -> None:
    """A worker process: replay parts in the shared snapshot until told to stop (None)."""
    if not _SNAPSHOT_ID.fullmatch(snapshot):
        done.put(("failed", f"{snapshot!r} is not a snapshot id"))
        return
    engine = database.create(url)
    progress = _Batched(done)
    try:
        with (
            database.translated_errors(),
            engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn,
            conn.begin(),
        ):
            conn.exec_driver_sql(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            while (part := todo.get()) is not None:
                found = Report(source="db", scope={}, max_problems=max_problems)
                if part.jobs is None:
                    seal_pass(conn, LIVE, found, scope, progress, None)
                else:
                    histories(
                        conn, LIVE, found, scope, live=True, progress=progress, jobs=part.jobs
                    )
                progress.flush()
                done.put(("done", part.index, found))
    except Exception as error:  # noqa: BLE001 - the process boundary: say why, then stop
        log.debug("replay worker failed", exc_info=True)
        done.put(("failed", f"{type(error).__name__}: {error}"))
    finally:
        engine.dispose()
