"""The commands that change concurrency limits and pauses, and list them and the queues.

Both are operator settings kept in small tables (`job_limit`, `job_pause`) that every
claim reads in its own statement (`jobtrail.adapters.sql.claim_query`), so a change holds
on every worker on every machine from its commit. Every change is written with its actor
and reason to the append-only control log in the same transaction
(`jobtrail.adapters.sql.control`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobtrail.adapters.sql.control import record_change
from jobtrail.adapters.sql.engine import WRITE
from jobtrail.adapters.sql.errors import translated_errors
from jobtrail.adapters.sql.schema import job, job_limit, job_pause
from jobtrail.domain import limits
from jobtrail.domain.errors import NotPaused, UnknownLimit, UnknownQueue
from jobtrail.domain.job import SYSTEM, Meta
from jobtrail.domain.ports import Clock
from jobtrail.domain.services import check_meta
from sqlalchemy import Connection, Engine, delete, exists, func, select

QUEUE, TYPE = "queue", "type"
"""The kinds of pause: a named queue, or a job type in every queue."""


# ---------------------------------------------------------------------- the commands


@dataclass
class FlowSettings:
    """The commands behind `jobtrail limit` and `jobtrail pause`/`resume`."""

    engine: Engine
    clock: Clock

    def set_limit(
        self,
        job_type: str,
        max_running: int,
        *,
        per_key: bool = False,
        reason: str | None = None,
        meta: Meta = SYSTEM,
    ) -> None:
        """At most ``max_running`` jobs of ``job_type`` processing at once (per key)."""
        limits.JOB_TYPE.check(job_type, "job_type")
        limits.MAX_RUNNING.check(max_running, "max_running")
        _check_who(reason, meta)
        with self._write() as conn:
            conn.execute(
                delete(job_limit).where(
                    job_limit.c.job_type == job_type, job_limit.c.per_key == per_key
                )
            )
            conn.execute(
                job_limit.insert().values(
                    job_type=job_type,
                    per_key=per_key,
                    max_running=max_running,
                    updated_at=self.clock.now(),
                    actor=meta.actor,
                )
            )
            data = {"job_type": job_type, "per_key": per_key, "max_running": max_running}
            _record(conn, "limit_set", job_type, data, reason, meta, self.clock.now())

    def remove_limit(
        self,
        job_type: str,
        *,
        per_key: bool = False,
        reason: str | None = None,
        meta: Meta = SYSTEM,
    ) -> None:
        limits.JOB_TYPE_FILTER.check(job_type, "job_type")
        _check_who(reason, meta)
        with self._write() as conn:
            removed = conn.execute(
                delete(job_limit).where(
                    job_limit.c.job_type == job_type, job_limit.c.per_key == per_key
                )
            ).rowcount
            if not removed:
                raise UnknownLimit(job_type=job_type, scope=_scope(per_key))
            data = {"job_type": job_type, "per_key": per_key}
            _record(conn, "limit_removed", job_type, data, reason, meta, self.clock.now())

    def list_limits(self) -> list[dict[str, Any]]:
        query = select(*job_limit.c).order_by(job_limit.c.job_type, job_limit.c.per_key)
        with translated_errors(), self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def pause(
        self,
        name: str,
        *,
        kind: str = QUEUE,
        reason: str | None = None,
        meta: Meta = SYSTEM,
    ) -> bool:
        """Stop claims from a queue (or of a job type); False if it was paused already.

        Only a queue (type) some job was queued in can be paused: a typo would otherwise
        pause nothing and look as if it worked.
        """
        _check_name(name, kind)
        _check_who(reason, meta)
        with self._write() as conn:
            _require_known(conn, name, kind)
            if conn.execute(_paused(name, kind)).first() is not None:
                return False
            conn.execute(
                job_pause.insert().values(
                    kind=kind,
                    name=name,
                    paused_at=self.clock.now(),
                    actor=meta.actor,
                    reason=reason,
                )
            )
            _record(
                conn, "paused", name, {"kind": kind, "name": name}, reason, meta, self.clock.now()
            )
        return True

    def resume(
        self,
        name: str,
        *,
        kind: str = QUEUE,
        reason: str | None = None,
        meta: Meta = SYSTEM,
    ) -> None:
        _check_name(name, kind)
        _check_who(reason, meta)
        with self._write() as conn:
            removed = conn.execute(
                delete(job_pause).where(job_pause.c.kind == kind, job_pause.c.name == name)
            ).rowcount
            if not removed:
                raise NotPaused(kind=kind, name=name)
            _record(
                conn, "resumed", name, {"kind": kind, "name": name}, reason, meta, self.clock.now()
            )

    def queues(self) -> list[dict[str, Any]]:
        """Each queue with its jobs counted by status, and whether it is paused."""
        query = select(job.c.queue, job.c.status, func.count()).group_by(job.c.queue, job.c.status)
        with translated_errors(), self.engine.connect() as conn:
            counts = conn.execute(query).all()
            paused = set(
                conn.execute(select(job_pause.c.name).where(job_pause.c.kind == QUEUE)).scalars()
            )
        by_queue: dict[str, dict[str, Any]] = {}
        for name in sorted({q for q, _, _ in counts} | paused):
            by_queue[name] = {"queue": name, "paused": name in paused, "jobs": {}}
        for name, status, count in counts:
            by_queue[name]["jobs"][status] = count
        return list(by_queue.values())

    def list_pauses(self) -> list[dict[str, Any]]:
        query = select(*job_pause.c).order_by(job_pause.c.kind, job_pause.c.name)
        with translated_errors(), self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction (SQLite: BEGIN IMMEDIATE), the driver's errors translated."""
        with translated_errors(), self.engine.connect() as conn:
            conn = conn.execution_options(**WRITE)
            with conn.begin():
                yield conn


def _paused(name: str, kind: str) -> Any:
    return select(job_pause.c.name).where(job_pause.c.kind == kind, job_pause.c.name == name)


def _require_known(conn: Connection, name: str, kind: str) -> None:
    column = job.c.queue if kind == QUEUE else job.c.job_type
    known = conn.execute(select(exists().where(column == name))).scalar()
    if not known and not (kind == QUEUE and name == "default"):
        raise UnknownQueue(kind=kind, name=name)


def _check_name(name: str, kind: str) -> None:
    if kind not in (QUEUE, TYPE):
        raise ValueError(f"kind must be {QUEUE!r} or {TYPE!r}, not {kind!r}")
    (limits.QUEUE if kind == QUEUE else limits.JOB_TYPE_FILTER).check(name, kind)


def _check_who(reason: str | None, meta: Meta) -> None:
    limits.check_optional(limits.REASON, reason, "reason")
    check_meta(meta)


def _scope(per_key: bool) -> str:
    return "per concurrency key" if per_key else "for the whole type"


def _record(
    conn: Connection,
    action: str,
    subject: str,
    data: dict[str, Any],
    reason: str | None,
    meta: Meta,
    now: datetime,
) -> None:
    record_change(
        conn,
        action=action,
        subject=subject,
        data=data,
        actor=meta.actor,
        reason=reason,
        now=now,
    )
