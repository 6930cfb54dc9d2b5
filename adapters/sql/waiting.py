"""Waiting for a job to finish: LISTEN/NOTIFY on PostgreSQL, a growing poll on SQLite.

The row is the truth; a notification only says "look again". A waiter reads the job's row,
returns it once its status is completed, failed or cancelled, and otherwise sleeps until it
is woken or ``fallback_seconds`` pass, then reads it again, until its timeout
(`WaitTimedOut`).

PostgreSQL: migration 0008 runs ``pg_notify(CHANNEL, id)`` when a row turns final (ids
only: a payload is limited to 8 kB). One `Listener` per engine — one thread, one extra
connection in autocommit mode — listens for the whole process and wakes the waiters of each
id it hears; a thousand waiters cost one connection, not a thousand. No wakeup is lost:

- a waiter registers its id *before* it reads the row, so a notification sent after that
  read always finds it;
- when LISTEN is established (the first time, and after every reconnection), the listener
  wakes every registered waiter, so a job that finished before LISTEN took effect is seen
  by the re-read that follows;
- every ``fallback_seconds`` (1 s) a waiter re-reads the row anyway, in case a notification
  was missed (a lost connection) or the listener cannot connect at all: waiting then
  degrades to polling, with a warning in the log, instead of failing.

The listener reconnects with backoff and stops, closing its connection, once no waiter has
needed it for `LINGER_SECONDS`.

`Listener` serves any channel: `listener_for(engine, channel)` gives one per engine and
channel, each with its connection. Besides the waiters of one payload (a job id), a
*watcher* is called for every notification of its payloads, or of all of them, and on every
(re)LISTEN: workers and the relay wake that way (`jobtrail.adapters.sql.wakeup`).

SQLite has no notifications: a waiter polls, every 50 ms at first, growing to 500 ms.

One module: the wait and the listener it is built on, which the wakeups reuse.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING, Any

from jobtrail.adapters.sql.engine import is_postgres
from jobtrail.adapters.sql.errors import translated_errors
from jobtrail.domain import limits
from jobtrail.domain.errors import JobNotFound, JobtrailError, WaitTimedOut
from jobtrail.domain.status import JobStatus

if TYPE_CHECKING:
    import psycopg
    from sqlalchemy import Engine

log = logging.getLogger(__name__)

CHANNEL = "jobtrail_job_finished"
"""The channel of migration 0008's trigger (tests/unit/test_waiting.py keeps them equal)."""

FALLBACK_SECONDS = 1.0
"""PostgreSQL: a waiter re-reads its row at least this often, notification or not."""
POLL_FIRST, POLL_GROWTH, POLL_MAX = 0.05, 1.5, 0.5
"""SQLite: the first poll interval, its growth per poll, and its cap (seconds)."""
TICK_SECONDS = 0.5
"""How often the listener looks up from its connection (to retire when idle)."""
LINGER_SECONDS = 10.0
"""The listener closes its connection after this long without a waiter."""
RECONNECT_FIRST, RECONNECT_MAX = 0.1, 5.0
"""Backoff of the listener's reconnections (seconds, doubling)."""
CONNECT_TIMEOUT = 5

Read = Callable[[str], dict[str, Any] | None]
"""Reads a job's row (`JobQueries.get`); None for an unknown id."""


def wait_for(
    engine: Engine,
    read: Read,
    job_id: str,
    timeout: float,
    *,
    fallback_seconds: float = FALLBACK_SECONDS,
) -> dict[str, Any]:
    """The row of ``job_id`` once it is final; `WaitTimedOut` after ``timeout`` seconds.

    `JobNotFound` at once for an unknown id, `InvalidField` for a timeout or fallback that
    is not more than 0 and at most a week.
    """
    limits.WAIT.check(timeout, "timeout")
    limits.WAIT.check(fallback_seconds, "fallback_seconds")
    deadline = time.monotonic() + timeout
    if not is_postgres(engine):
        return _until_final(read, job_id, timeout, deadline, threading.Event(), poll_intervals())
    with listener_for(engine).subscribe(job_id) as wake:
        intervals = itertools.repeat(fallback_seconds)
        return _until_final(read, job_id, timeout, deadline, wake, intervals)


def poll_intervals() -> Iterator[float]:
    """SQLite's sleeps between reads: 50 ms, 75 ms, … up to 500 ms, then 500 ms forever."""
    interval = POLL_FIRST
    while True:
        yield interval
        interval = min(interval * POLL_GROWTH, POLL_MAX)


def _until_final(
    read: Read,
    job_id: str,
    timeout: float,
    deadline: float,
    wake: threading.Event,
    intervals: Iterator[float],
) -> dict[str, Any]:
    for interval in intervals:
        wake.clear()  # before the read: a wakeup during the read is kept for the wait below
        row = read(job_id)
        if row is None:
            raise JobNotFound(job_id=job_id)
        if JobStatus(row["status"]).is_terminal:
            return row
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimedOut(job_id=job_id, seconds=timeout, status=row["status"])
        wake.wait(min(interval, left))
    raise AssertionError("the intervals never end")  # pragma: no cover


# ------------------------------------------------------------------------ the listener


Wake = Callable[[], None]
"""What the listener calls: sets a waiter's event, or wakes a worker or the relay."""


class Listener:
    """One LISTEN connection on one channel, shared by every waiter of the process on one
    database."""

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection[Any]],
        name: str,
        channel: str = CHANNEL,
    ) -> None:
        self._connect = connect
        self._name = name
        self.channel = channel
        self._lock = threading.Lock()
        self._waiters: dict[str | None, set[Wake]] = {}
        """The wakes of each payload; under None, those of every payload."""
        self._thread: threading.Thread | None = None
        self._idle_since = time.monotonic()
        self.listening = False
        """Whether LISTEN is in effect now (for tests and the log)."""

    @contextlib.contextmanager
    def subscribe(self, job_id: str) -> Iterator[threading.Event]:
        """An event set whenever ``job_id`` may have finished; registered until the exit."""
        wake = threading.Event()
        with self.watch(wake.set, [job_id]):
            yield wake

    @contextlib.contextmanager
    def watch(self, wake: Wake, payloads: Collection[str] | None = None) -> Iterator[None]:
        """Call ``wake`` for each notification of ``payloads`` (None: any payload), and each
        time LISTEN takes effect, until the exit. ``wake`` runs in the listener's thread,
        under its lock: it must be quick and must not raise."""
        keys: list[str | None] = [None] if payloads is None else list(payloads)
        with self._lock:
            for key in keys:
                self._waiters.setdefault(key, set()).add(wake)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run,
                    name=f"jobtrail-listen-{self.channel}-{self._name}",
                    daemon=True,
                )
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                for key in keys:
                    waiting = self._waiters.get(key, set())
                    waiting.discard(wake)
                    if not waiting:
                        self._waiters.pop(key, None)
                if not self._waiters:
                    self._idle_since = time.monotonic()

    def _run(self) -> None:
        try:
            self._listen_until_retired()
        except Exception:  # a bug, not the database: waiters still re-read on their own
            log.exception("waiting: the listener on %s stopped", self.channel)
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread, self.listening = None, False

    def _listen_until_retired(self) -> None:
        delay = RECONNECT_FIRST
        while True:
            try:
                with translated_errors(), self._connect() as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    self._established()
                    delay = RECONNECT_FIRST
                    if self._dispatch(conn):
                        return
            except JobtrailError as error:
                self.listening = False
                if self._retired(linger=0):  # nobody is waiting: no reason to reconnect
                    return
                level = logging.WARNING if delay == RECONNECT_FIRST else logging.DEBUG
                log.log(
                    level,
                    "waiting: no LISTEN on %s (%s); waiters fall back to polling until it "
                    "is back (retrying)",
                    self.channel,
                    error,
                )
            time.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    def _established(self) -> None:
        """LISTEN is in effect: wake everyone, so what happened before is read."""
        with self._lock:
            self.listening = True
            for wake in {wake for waiting in self._waiters.values() for wake in waiting}:
                wake()
        log.debug("waiting: listening on %s", self.channel)

    def _dispatch(self, conn: psycopg.Connection[Any]) -> bool:
        """Wake the waiters of each payload heard; True once retired (no waiter for a while)."""
        while True:
            for notify in conn.notifies(timeout=TICK_SECONDS):
                with self._lock:
                    for wake in self._waiters.get(notify.payload, ()):
                        wake()
                    for wake in self._waiters.get(None, ()):
                        wake()
            if self._retired(LINGER_SECONDS):
                return True

    def _retired(self, linger: float) -> bool:
        """Stop when no waiter came for ``linger`` seconds (a new one starts a new thread)."""
        with self._lock:
            idle = time.monotonic() - self._idle_since >= linger
            if self._waiters or not idle:
                return False
            self._thread, self.listening = None, False
            return True


_REGISTRY: dict[str, weakref.WeakKeyDictionary[Engine, Listener]] = {
    CHANNEL: weakref.WeakKeyDictionary()
}
"""The listeners of each channel, by engine."""
_LISTENERS = _REGISTRY[CHANNEL]
"""The listeners of `CHANNEL` (waiting for jobs to finish)."""
_LISTENERS_LOCK = threading.Lock()


def _forget_listeners() -> None:
    """In a forked child, which has none of its parent's threads: start afresh (the
    parent's connections are left alone, never closed from the child)."""
    global _LISTENERS_LOCK
    _LISTENERS_LOCK = threading.Lock()  # it may have been held by a thread at the fork
    for listeners in _REGISTRY.values():
        listeners.clear()


os.register_at_fork(after_in_child=_forget_listeners)


def listener_for(engine: Engine, channel: str = CHANNEL) -> Listener:
    """The listener of ``engine``'s database on ``channel``, made on first use (one per
    engine and channel)."""
    with _LISTENERS_LOCK:
        listeners = _REGISTRY.setdefault(channel, weakref.WeakKeyDictionary())
        listener = listeners.get(engine)
        if listener is None:
            listener = Listener(_connector(engine), engine.url.database or "postgres", channel)
            listeners[engine] = listener
        return listener


def _connector(engine: Engine) -> Callable[[], psycopg.Connection[Any]]:
    """Opens a connection of its own (not the pool's: LISTEN must not leak to its users).

    It holds the connection parameters, never the engine, so the engine can be collected.
    """
    cargs, cparams = engine.dialect.create_connect_args(engine.url)

    def connect() -> psycopg.Connection[Any]:
        import psycopg

        params = {"connect_timeout": CONNECT_TIMEOUT, **cparams}
        return psycopg.connect(*cargs, **params, autocommit=True)

    return connect
