"""Where a relay is in the log, and which relay process may publish: one row per relay name.

The row is a lease, not a lock held by a connection, so it works the same on SQLite and
PostgreSQL and survives a database restart. A relay that lost its lease (it stalled past
its expiry and a standby took over) cannot move the position any more: every write is
fenced by ``owner``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from jobtrail.adapters.sql.engine import WRITE, is_postgres
from jobtrail.adapters.sql.errors import translated_errors
from jobtrail.adapters.sql.schema import relay_position
from jobtrail.domain.errors import JobtrailError
from sqlalchemy import Connection, Engine, and_, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

T = relay_position.c


class LostRelayLease(JobtrailError):
    """Relay {owner} no longer holds the lease of relay {name}: another relay took over."""


class SqlRelayPosition:
    """The acknowledged position and the lease of one named relay."""

    def __init__(self, engine: Engine, name: str) -> None:
        self.engine = engine
        self.name = name
        self._created = False

    def acquire(self, owner: str, now: datetime, lease: timedelta) -> int | None:
        """Take or renew the lease; the stored position when we hold it, else None."""
        self._create_if_missing(now)
        free = or_(T.owner.is_(None), T.owner == owner, T.lease_expires_at < now)
        taken = (
            update(relay_position)
            .where(and_(T.name == self.name, free))
            .values(owner=owner, lease_expires_at=now + lease, updated_at=now)
        )
        with self._writing() as conn:
            if conn.execute(taken).rowcount == 0:
                return None
            return int(conn.execute(select(T.position).where(T.name == self.name)).scalar_one())

    def save(self, owner: str, position: int, now: datetime, lease: timedelta) -> None:
        """Record what the broker acknowledged, renewing the lease; fenced by `owner`.

        On PostgreSQL the commit does not wait for the disk (`synchronous_commit = off`):
        a save lost in a server crash only makes the relay send those events again, which
        consumers drop, and waiting for the flush cost the relay 10-20 ms per batch.
        """
        saved = (
            update(relay_position)
            .where(T.name == self.name, T.owner == owner)
            .values(position=position, lease_expires_at=now + lease, updated_at=now)
        )
        with self._writing() as conn:
            if is_postgres(conn):
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            if conn.execute(saved).rowcount == 0:
                raise LostRelayLease(owner=owner, name=self.name)

    def release(self, owner: str, now: datetime) -> None:
        """Give the lease up at once, so a standby relay need not wait for it to expire."""
        released = (
            update(relay_position)
            .where(T.name == self.name, T.owner == owner)
            .values(owner=None, lease_expires_at=None, updated_at=now)
        )
        with self._writing() as conn:
            conn.execute(released)

    def holder(self) -> tuple[str | None, int, datetime | None]:
        """(owner, position, lease expiry) as stored; (None, 0, None) before the first run."""
        query = select(T.owner, T.position, T.lease_expires_at).where(T.name == self.name)
        with translated_errors(), self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return (None, 0, None)
        return (row.owner, int(row.position), row.lease_expires_at)

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with (
            translated_errors(),
            self.engine.connect().execution_options(**WRITE) as conn,
            conn.begin(),
        ):
            yield conn

    def _create_if_missing(self, now: datetime) -> None:
        if self._created:
            return
        dialect_insert = pg_insert if self.engine.dialect.name == "postgresql" else sqlite_insert
        row = {"name": self.name, "position": 0, "updated_at": now}
        with self._writing() as conn:
            conn.execute(dialect_insert(relay_position).values(row).on_conflict_do_nothing())
        self._created = True
