"""The control log: every change an operator makes to limits, pauses and schedules.

Those settings are not facts of a job's life, so they are not job events; each change is
one row of the append-only `control_log` table, written in the same transaction as the
change itself, with who made it, when, and why. `read_control_log` reads it back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from jobtrail.adapters.sql.schema import control_log
from sqlalchemy import Connection, insert, select


class ControlChange(NamedTuple):
    """One row of the control log."""

    position: int
    occurred_at: datetime
    action: str
    subject: str
    data: dict[str, Any]
    actor: str
    reason: str | None


def record_change(
    conn: Connection,
    *,
    action: str,
    subject: str,
    data: dict[str, Any],
    actor: str,
    reason: str | None,
    now: datetime,
) -> None:
    """Append one change (``action`` e.g. ``limit_set``, ``paused``, ``schedule_added``)."""
    conn.execute(
        insert(control_log).values(
            occurred_at=now, action=action, subject=subject, data=data, actor=actor, reason=reason
        )
    )


def read_control_log(conn: Connection, limit: int = 1000) -> list[ControlChange]:
    """The latest ``limit`` changes, oldest first."""
    rows = conn.execute(
        select(*control_log.c).order_by(control_log.c.position.desc()).limit(limit)
    ).all()
    return [ControlChange(*row) for row in reversed(rows)]
