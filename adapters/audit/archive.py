"""`jobtrail archive`: whole histories of finished jobs moved out of the log, with proof.

Seal, then archive. Every archive is cut at a seal (``--seal``, or one appended now for
``--before``) and takes the jobs whose history ended (a terminal event) at or before it.
The steps, each safe to interrupt:

1. One read pass over the log up to the seal, in position order. It checks the log first:
   what the last archive left up to its own seal still folds into the digest it recorded,
   and the events since then continue its seal's digest into the cut seal's. A log that no
   longer matches its seals is refused (`ArchiveRefused`): an archive must not carry
   tampering away. The same pass writes the chosen jobs' events to a file beside the
   destination and folds them (the events' digest) and the events that stay (the kept
   digest, which a replay without the files checks).
2. The file is synced, hashed and moved into place.
3. One transaction (`archive_removal`): the record (`job_log_archives`), the jobs
   (`job_log_archive_jobs`), the events removed through the log's one narrow DELETE path
   (PostgreSQL: the function `jobtrail_archive_events`; migrations 0012 and 0015) and
   compared with the file (same count, same digest, or nothing is removed), and the jobs'
   rows. On PostgreSQL it starts beside step 1 and removes while the file is written; it
   commits only after step 2.

Killed before step 3 commits, the log is as it was and the file has no record: running the
same command again replaces that file (only an archive file no record names) and finishes.

About 340 lines, over the ~300 a module aims at: steps 1 and 2 share the fold, the cut and
the file, and mean nothing apart (step 3 is `archive_removal`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from jobtrail.adapters.audit.archive_removal import finish, removal
from jobtrail.adapters.audit.export import (
    check_destination,
    move_into_place,
    partial_beside,
    write_line,
)
from jobtrail.adapters.audit.export_format import ARCHIVE, FORMAT_VERSION, HEADER
from jobtrail.adapters.audit.reads import (
    LIVE,
    last_position,
    read_archives,
    read_seals,
    stream_marked,
)
from jobtrail.adapters.audit.seal import append_seal
from jobtrail.adapters.sql.engine import is_postgres, translated_errors
from jobtrail.adapters.sql.schema import (
    job_events,
    relay_position,
)
from jobtrail.domain.canonical import utc_iso
from jobtrail.domain.errors import ArchiveRefused, CannotWrite
from jobtrail.domain.events import TERMINAL_EVENT_TYPES
from jobtrail.domain.seals import ArchiveRecord, RunningDigest, Seal
from sqlalchemy import Connection, Engine, Select, func, select

log = logging.getLogger("jobtrail.archive")


@contextmanager
def _phase(name: str) -> Iterator[None]:
    """Log how long one step took (``jobtrail -v archive``: where an archive's time goes)."""
    started = time.perf_counter()
    yield
    log.info("archive step: %s in %.1f s", name, time.perf_counter() - started)


@dataclass(frozen=True)
class Cut:
    """Which jobs an archive takes: finished by seal ``seal_id`` (or by a seal appended
    now), and, with ``before``, finished before that time."""

    seal_id: int | None = None
    before: datetime | None = None


@dataclass(frozen=True)
class Archived:
    """An archive carried out: its record, and whether it replaced an unrecorded file."""

    record: ArchiveRecord
    replaced: bool


@dataclass
class _Fold:
    """What the read pass folds, in position order."""

    moved: RunningDigest
    kept: RunningDigest
    left_before: RunningDigest
    """The events up to the last archive's seal (to compare with its kept digest)."""
    since: RunningDigest
    """The whole log's digest, on from the last archive's seal (to compare with the cut)."""
    jobs: int = 0
    first_position: int = 0


def archive(
    engine: Engine, cut: Cut, out: Path, actor: str, *, force: bool = False
) -> Archived | None:
    """Archive what ``cut`` chooses into ``out``; None when nothing is left to archive."""
    with translated_errors(), engine.connect() as conn:
        previous = _last_archive(conn)
        seal = _seal(conn, cut.seal_id) if cut.seal_id is not None else None
        if seal is not None:
            _check_order(seal, previous)
        upto = seal.position if seal else last_position(conn, LIVE)
        if _count(conn, chosen_jobs(published_upto(conn, upto), cut.before)) == 0:
            return None
        conn.rollback()
    if seal is None:
        with _phase("sealed the log"):
            new = append_seal(engine, actor)
        seal = Seal(new.seal_id, new.position, new.event_count, new.digest)  # the newest
    replaced = _claim(out, force=force, engine=engine)
    done = _write_and_remove(engine, cut, seal, previous, out, actor, replace=replaced or force)
    return Archived(done, replaced) if done else None


def chosen_jobs(upto: int, before: datetime | None) -> Select[Any]:
    """The jobs whose terminal event is at or before ``upto`` (and before ``before``)."""
    e = job_events
    query = select(e.c.job_id).where(e.c.type.in_(TERMINAL_EVENT_TYPES), e.c.position <= upto)
    return query if before is None else query.where(e.c.occurred_at < before)


def published_upto(conn: Connection, upto: int) -> int:
    """``upto``, or less if a relay has not published that far yet: an archive takes only
    jobs whose every event has reached the topic (when a relay has ever run)."""
    published = conn.execute(select(func.min(relay_position.c.position))).scalar_one()
    return upto if published is None else min(upto, int(published))


def _count(conn: Connection, query: Select[Any]) -> int:
    return int(conn.execute(select(func.count()).select_from(query.subquery())).scalar_one())


def _last_archive(conn: Connection) -> tuple[ArchiveRecord, Seal] | None:
    records = read_archives(conn, LIVE)
    if not records:
        return None
    return records[-1], _seal(conn, records[-1].seal_id)


def _seal(conn: Connection, seal_id: int) -> Seal:
    for seal in read_seals(conn, LIVE):
        if seal.seal_id == seal_id:
            return seal
    raise ArchiveRefused(reason=f"there is no seal {seal_id} (`jobtrail seal` appends one)")


def _check_order(seal: Seal, previous: tuple[ArchiveRecord, Seal] | None) -> None:
    """Archives are cut at seals in log order, so each kept digest covers the ones before."""
    if previous and seal.position < previous[1].position:
        record, before = previous
        raise ArchiveRefused(
            reason=f"seal {seal.seal_id} (position {seal.position}) is before the cut of "
            f"archive {record.archive_id} (seal {before.seal_id}, position {before.position}); "
            "use a later seal, or --before"
        )


def _claim(out: Path, *, force: bool, engine: Engine) -> bool:
    """Whether ``out`` exists and is an archive file no record names, which may be replaced
    (what an interrupted archive leaves); `CannotWrite` if it exists otherwise."""
    if force or not out.exists() or not out.is_file():
        check_destination(out, force=force)
        return False
    if not is_archive_file(out):
        check_destination(out)  # raises: it exists
    digest, _size = file_digest(out)
    with translated_errors(), engine.connect() as conn:
        recorded = {r.file_digest: r.archive_id for r in read_archives(conn, LIVE)}
    if digest in recorded:
        raise CannotWrite(path=out, reason=f"it is the file of archive {recorded[digest]}")
    log.warning("replacing %s: an archive file no record names (an interrupted archive)", out)
    return True


def is_archive_file(path: Path) -> bool:
    """Whether ``path`` begins like an archive file (the export header, then an archive line)."""
    try:
        with path.open(encoding="utf-8") as f:
            header, second = json.loads(f.readline()), json.loads(f.readline())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return (
        isinstance(header, dict)
        and header.get(HEADER) == FORMAT_VERSION
        and isinstance(second, dict)
        and ARCHIVE in second
    )


def file_digest(path: Path) -> tuple[str, int]:
    """The sha256 and the size of a file, read back from the disk."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _write_and_remove(
    engine: Engine,
    cut: Cut,
    seal: Seal,
    previous: tuple[ArchiveRecord, Seal] | None,
    out: Path,
    actor: str,
    *,
    replace: bool,
) -> ArchiveRecord | None:
    with translated_errors(), engine.connect() as conn:
        chosen = chosen_jobs(published_upto(conn, seal.position), cut.before)
        conn.rollback()
    after = previous[0].archive_id if previous else 0
    with removal(engine, after, chosen, seal.seal_id) as removing:
        with partial_beside(out) as (partial, f):
            with (
                translated_errors(),
                engine.connect().execution_options(**_snapshot(engine)) as conn,
            ):
                with _phase("read the log and wrote the file"):
                    fold = _write(conn, f, chosen, cut, seal, previous)
                conn.rollback()
            if fold.jobs == 0:
                return None
            with _phase("synced and hashed the file"):
                f.flush()
                os.fsync(f.fileno())
                digest, size = file_digest(partial)
            move_into_place(partial, out, force=replace)
        record = ArchiveRecord(
            archive_id=0,
            seal_id=seal.seal_id,
            seal_position=seal.position,
            file_name=out.name,
            file_digest=digest,
            file_bytes=size,
            event_count=fold.moved.count,
            job_count=fold.jobs,
            first_position=fold.first_position,
            last_position=fold.moved.position,
            events_digest=fold.moved.digest,
            kept_count=fold.kept.count,
            kept_digest=fold.kept.digest,
        )
        with _phase("recorded the archive"):
            return finish(removing, record, cut.before, actor)


def _snapshot(engine: Engine) -> dict[str, Any]:
    return {"isolation_level": "REPEATABLE READ"} if is_postgres(engine) else {}


def _write(
    conn: Connection,
    f: IO[str],
    chosen: Select[Any],
    cut: Cut,
    seal: Seal,
    previous: tuple[ArchiveRecord, Seal] | None,
) -> _Fold:
    """The read pass: the chosen jobs' events into ``f``, everything folded and checked."""
    before_seal = previous[1] if previous else None
    fold = _Fold(
        RunningDigest(), RunningDigest(), RunningDigest(), RunningDigest.after(before_seal)
    )
    last_cut = before_seal.position if before_seal else 0
    write_line(f, {HEADER: FORMAT_VERSION})
    write_line(f, {ARCHIVE: _descriptor(cut, seal, previous)})
    for record, moves in stream_marked(conn, seal.position, chosen):
        (fold.left_before if record.position <= last_cut else fold.since).add(
            record.position, record.hash
        )
        if not moves:
            fold.kept.add(record.position, record.hash)
            continue
        write_line(f, record.envelope())
        fold.moved.add(record.position, record.hash)
        fold.first_position = fold.first_position or record.position
        fold.jobs += record.type in TERMINAL_EVENT_TYPES
    _check_log(fold, seal, previous)
    write_line(f, {"manifest": _manifest(fold)})
    return fold


def _descriptor(
    cut: Cut, seal: Seal, previous: tuple[ArchiveRecord, Seal] | None
) -> dict[str, Any]:
    return {
        "seal_id": seal.seal_id,
        "seal_position": seal.position,
        "finished_before": utc_iso(cut.before) if cut.before else None,
        "after_archive": previous[0].archive_id if previous else None,
    }


def _manifest(fold: _Fold) -> dict[str, Any]:
    return {
        "count": fold.moved.count,
        "last_position": fold.moved.position,
        "digest": fold.moved.digest,
        "jobs": fold.jobs,
        "first_position": fold.first_position,
    }


def _check_log(fold: _Fold, seal: Seal, previous: tuple[ArchiveRecord, Seal] | None) -> None:
    """Refuse to archive from a log that no longer matches its records."""
    if previous is not None:
        record = previous[0]
        left = (fold.left_before.count, fold.left_before.digest)
        if left != (record.kept_count, record.kept_digest):
            raise ArchiveRefused(
                reason=f"the log up to position {record.seal_position} no longer matches what "
                f"archive {record.archive_id} left there ({fold.left_before.count} events, "
                f"{record.kept_count} recorded): run `jobtrail replay`"
            )
    if not fold.since.matches(seal):
        raise ArchiveRefused(
            reason=f"the log up to position {seal.position} does not fold into seal "
            f"{seal.seal_id} ({fold.since.count} events, {seal.event_count} sealed): "
            "run `jobtrail replay`"
        )
