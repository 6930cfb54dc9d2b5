"""How long a worker waits after the database failed, and when waiting cannot help.

- An unreachable database (`DatabaseUnavailable`: a restart, a lost connection, a busy
  SQLite file) and a conflict with another writer are waited out, however long it takes,
  backing off from `BACKOFF_MIN` to `BACKOFF_MAX` seconds.
- A database without jobtrail's schema (`SchemaMissing`) stops the worker at once: nothing
  it claims or writes can work until someone runs ``jobtrail db init``.
- A database that refuses every write for another reason (permission denied, a read-only
  database or role: a plain `StorageError` raised for the whole turn, not for one job's
  data, which the turn writes alone instead) is tried again for
  `WorkerSettings.give_up_seconds`; if it refused everything for that long, with no write
  taken in between, the worker stops with `DatabaseRefusesWrites`.

`Worker.run` raises the error that stopped it; the CLI prints it as one line, exit status 1.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from jobtrail.domain.errors import DatabaseUnavailable, JobtrailError, SchemaMissing, StorageError

BACKOFF_MIN, BACKOFF_MAX = 0.1, 5.0
"""Seconds a worker waits after the database failed, doubling up to the maximum."""


class DatabaseRefusesWrites(JobtrailError):
    """The database refused every write of the worker for {seconds:.0f} s ({reason}); stopping. Check that the worker's role may write and that the database is not read-only."""  # noqa: E501


class Patience:
    def __init__(self, give_up_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.give_up_seconds = give_up_seconds
        self.clock = clock
        self.backoff = BACKOFF_MIN
        self.fatal = False
        """The worker was stopped by an error that waiting cannot mend."""
        self._refused_since: float | None = None

    def failed(self, error: JobtrailError) -> float:
        """Seconds to wait before trying again; raises if waiting cannot help."""
        if isinstance(error, SchemaMissing):
            self.fatal = True
            raise error
        if isinstance(error, StorageError) and not isinstance(error, DatabaseUnavailable):
            self._refused(error)
        wait, self.backoff = self.backoff, min(self.backoff * 2, BACKOFF_MAX)
        return wait

    def turn_done(self) -> None:
        """A loop turn went through: the next failure waits the least again."""
        self.backoff = BACKOFF_MIN

    def accepted(self) -> None:
        """The database took a write: whatever it refused before was passing."""
        self._refused_since = None

    def _refused(self, error: StorageError) -> None:
        now = self.clock()
        if self._refused_since is None:
            self._refused_since = now
        elif now - self._refused_since >= self.give_up_seconds:
            self.fatal = True
            reason = error.context.get("reason") or str(error)
            raise DatabaseRefusesWrites(seconds=now - self._refused_since, reason=reason) from error
