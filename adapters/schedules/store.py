"""The `job_schedule` table, and the control-log row each change writes with it.

A change of a schedule (added, replaced, removed) and its `control_log` row are one
transaction: both or neither. A scheduler's own bookkeeping (``last_tick_at``) is not a
change an operator made and is not logged; the jobs it enqueued are in the event log.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from typing import Any

from jobtrail.adapters.schedules.definition import Definition, Schedule
from jobtrail.adapters.sql.control import record_change
from jobtrail.adapters.sql.engine import WRITE
from jobtrail.adapters.sql.errors import (
    SQLITE_CONSTRAINT_PRIMARYKEY,
    UNIQUE_VIOLATION,
    translated_errors,
)
from jobtrail.adapters.sql.schema import job_schedule
from jobtrail.domain.errors import ConcurrencyConflict, UnknownSchedule
from sqlalchemy import Connection, Engine, delete, insert, or_, select, update
from sqlalchemy import exc as sa_exc

ADD_ATTEMPTS = 3
"""Two adds of one new name race to insert it: the loser tries again, as a replacement."""


class Change(StrEnum):
    """What `ScheduleStore.put` did."""

    ADDED = "added"
    REPLACED = "replaced"
    UNCHANGED = "unchanged"
    """The same definition was already stored: nothing written, nothing logged."""


class _Raced(Exception):
    """Another transaction inserted the same name first."""


class ScheduleStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def list(self) -> list[Schedule]:
        """Every schedule, by name."""
        with translated_errors(), self.engine.connect() as conn:
            rows = conn.execute(select(job_schedule).order_by(job_schedule.c.name)).mappings()
            return [Schedule(**row) for row in rows]

    def get(self, name: str) -> Schedule:
        with translated_errors(), self.engine.connect() as conn:
            row = conn.execute(select(job_schedule).where(job_schedule.c.name == name)).mappings()
            found = row.first()
        if found is None:
            raise UnknownSchedule(name=name)
        return Schedule(**found)

    def put(
        self, definition: Definition, *, actor: str, reason: str | None, now: datetime
    ) -> Change:
        """Add the schedule, or replace the one of that name (keeping its ``last_tick_at``
        and ``created_at``); an identical definition changes nothing."""
        for _ in range(ADD_ATTEMPTS):
            try:
                with translated_errors(), self._writing() as conn:
                    return self._put(conn, definition, actor, reason, now)
            except _Raced:
                continue
        raise ConcurrencyConflict(job_id=f"(schedule {definition.name})", expected="(none)")

    def _put(
        self, conn: Connection, new: Definition, actor: str, reason: str | None, now: datetime
    ) -> Change:
        query = select(job_schedule).where(job_schedule.c.name == new.name).with_for_update()
        row = conn.execute(query).mappings().first()
        data: dict[str, Any] = new.values()
        if row is None:
            values = {**data, "created_at": now, "updated_at": now, "actor": actor}
            try:
                conn.execute(insert(job_schedule).values(**values))
            except sa_exc.IntegrityError as error:
                if _is_unique_violation(error):
                    raise _Raced from error
                raise
            change = Change.ADDED
        else:
            old = Schedule(**row)
            if old.definition == new:
                return Change.UNCHANGED
            conn.execute(
                update(job_schedule)
                .where(job_schedule.c.name == new.name)
                .values(**data, updated_at=now, actor=actor)
            )
            data["previous"] = old.definition.values()
            change = Change.REPLACED
        action = f"schedule_{change.value}"
        record_change(
            conn, action=action, subject=new.name, data=data, actor=actor, reason=reason, now=now
        )
        return change

    def remove(self, name: str, *, actor: str, reason: str | None, now: datetime) -> Schedule:
        """Delete the schedule; `UnknownSchedule` (nothing written) if there is none."""
        with translated_errors(), self._writing() as conn:
            query = select(job_schedule).where(job_schedule.c.name == name).with_for_update()
            row = conn.execute(query).mappings().first()
            if row is None:
                raise UnknownSchedule(name=name)
            removed = Schedule(**row)
            conn.execute(delete(job_schedule).where(job_schedule.c.name == name))
            data = {**removed.values(), "last_tick_at": _iso(removed.last_tick_at)}
            record_change(
                conn,
                action="schedule_removed",
                subject=name,
                data=data,
                actor=actor,
                reason=reason,
                now=now,
            )
        return removed

    def advance(self, schedule: Schedule, tick: datetime) -> bool:
        """Move ``last_tick_at`` forward to ``tick``, unless another scheduler went further
        or the definition changed since ``schedule`` was read. True if the row moved."""
        c = job_schedule.c
        statement = (
            update(job_schedule)
            .where(c.name == schedule.name, c.updated_at == schedule.updated_at)
            .where(or_(c.last_tick_at.is_(None), c.last_tick_at < tick))
            .values(last_tick_at=tick)
        )
        with translated_errors(), self._writing() as conn:
            return conn.execute(statement).rowcount == 1

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE, so it waits for the write lock
        instead of failing to upgrade a read)."""
        with self.engine.connect().execution_options(**WRITE) as conn, conn.begin():
            yield conn


def _is_unique_violation(error: sa_exc.IntegrityError) -> bool:
    orig: Any = error.orig
    if isinstance(orig, sqlite3.IntegrityError):
        return getattr(orig, "sqlite_errorcode", None) == SQLITE_CONSTRAINT_PRIMARYKEY
    return getattr(orig, "sqlstate", None) == UNIQUE_VIOLATION


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()
