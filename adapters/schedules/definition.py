"""A schedule: what an operator defines, checked before anything is written, and its row.

A definition is held to the same limits as a submitted job (`check_spec`: job type, payload,
priority, max attempts, queue), plus a name, a cron expression, a time zone and a catch-up
policy. The name is shorter than other names: it is part of every tick's idempotency key,
``schedule:NAME:2026-11-30T10:05:00+00:00``, which must fit the key's 200 characters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any

from jobtrail.adapters.schedules.cron import CatchUp, Cron
from jobtrail.domain import limits
from jobtrail.domain.canonical import utc_iso
from jobtrail.domain.errors import InvalidField, InvalidSchedule
from jobtrail.domain.services import JobSpec, check_spec

NAME = limits.Text(160, printable=True)
"""A schedule's name: 160 leaves room for ``schedule:`` and a tick in the idempotency key."""
KEY_PREFIX = "schedule:"


def tick_key(name: str, tick: datetime) -> str:
    """The idempotency key of ``name``'s job for ``tick``: one job per tick, however many
    schedulers enqueue it."""
    return f"{KEY_PREFIX}{name}:{tick.isoformat()}"


@dataclass(frozen=True)
class Definition:
    """What `add` sets; two equal definitions are the same schedule."""

    name: str
    cron: str
    timezone: str
    job_type: str
    payload: dict[str, Any]
    priority: int
    max_attempts: int
    queue: str
    catch_up: str

    @classmethod
    def checked(
        cls,
        name: object,
        cron: object,
        job_type: str,
        payload: dict[str, Any],
        *,
        timezone: object,
        catch_up: object,
        priority: int,
        max_attempts: int,
        queue: str,
    ) -> Definition:
        """Every field within its limits, else `InvalidSchedule` / `InvalidField`."""
        try:
            checked_name = NAME.check(name, "name")
        except InvalidField as error:
            raise InvalidSchedule(field="name", reason=error.reason) from None
        Cron.parse(cron, timezone)
        assert isinstance(cron, str) and isinstance(timezone, str)  # Cron.parse checked them
        check_spec(JobSpec(job_type, payload, max_attempts, priority, queue=queue))
        policy = CatchUp.parse(catch_up)
        return cls(
            checked_name, cron, timezone, job_type, payload, priority, max_attempts, queue, policy
        )

    def parsed(self) -> Cron:
        return Cron.parse(self.cron, self.timezone)

    def values(self) -> dict[str, Any]:
        """The definition's columns (``catch_up`` as its plain text)."""
        return {field.name: _plain(getattr(self, field.name)) for field in fields(Definition)}


@dataclass(frozen=True)
class Schedule(Definition):
    """A stored schedule: its definition, where it stands, and who last set it."""

    last_tick_at: datetime | None
    """The latest tick a scheduler enqueued (or skipped under its catch-up policy)."""
    created_at: datetime
    updated_at: datetime
    """When the definition was last set (added or replaced)."""
    actor: str

    @property
    def definition(self) -> Definition:
        return Definition(**self.values())

    @property
    def anchor(self) -> datetime:
        """Ticks after this are due: the latest one dealt with, or when it was (re)defined,
        whichever is later (a new definition does not reach back)."""
        if self.last_tick_at is None:
            return self.updated_at
        return max(self.last_tick_at, self.updated_at)

    def next_tick(self, after: datetime) -> datetime | None:
        return self.parsed().next_tick(max(after, self.anchor))

    def as_json(self, now: datetime) -> dict[str, Any]:
        """The schedule for ``list --json`` (times in UTC), with its next tick after ``now``."""
        row = {name: _plain(value) for name, value in asdict(self).items()}
        row["next_tick"] = self.next_tick(now)
        return {
            name: utc_iso(value) if isinstance(value, datetime) else value
            for name, value in row.items()
        }


def _plain(value: Any) -> Any:
    return str(value) if isinstance(value, CatchUp) else value
