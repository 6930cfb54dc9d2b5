"""The latency chart's durations, kept in the web process and caught up from the log.

Pairing every start with the event before it and every outcome with its start in SQL reads
about half a million rows for a day of a million-event log (over a second). Instead the web
process reads the log once, in position order, and keeps one wait (bucketed by the start)
and one run time (bucketed by the outcome) per attempt, in arrays sorted by time; a chart
request first reads the events after the last position seen (one query on the primary key,
usually empty), then finds each bucket by bisection and computes its percentiles.

Positions are gap-free in commit order (`jobtrail.adapters.sql.appends`), so "after P"
misses no event: the relay and replay read the log the same way. The numbers are the SQL
path's (`DashboardQueries.latency`, kept as the fallback and the tests' oracle): the times
are the database's own epoch expressions for the SQL path, the differences and bucket
arithmetic the same double-precision operations, the percentiles `percentile`.

Memory: per attempt two doubles for its wait and two for its run (three each on SQLite,
whose epoch expression rounds to milliseconds and so is kept apart from the exact time the
window is cut by), plus a small entry per job that has not finished yet (the ready time of
its latest event, the start of its current attempt). A million attempts is about 32 MB.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any

from jobtrail.adapters.sql.errors import translated_errors
from jobtrail.adapters.sql.schema import UtcDateTime
from jobtrail.adapters.web.params import Window
from jobtrail.adapters.web.queries import (
    PERCENTILES,
    RUN_OUTCOMES,
    DashboardQueries,
    Durations,
    percentile,
)
from jobtrail.domain.events import TERMINAL_EVENT_TYPES
from sqlalchemy import text

log = logging.getLogger(__name__)

FETCH = 5000
"""Rows per fetch of the streamed read."""
FLUSH = 50_000
"""Events read between merges of the new durations into the sorted arrays."""

Point = tuple[float, float, float]
"""(exact time, the SQL path's epoch of it, seconds) of one duration."""


class Series:
    """Durations of one kind sorted by the exact time of the event they are bucketed by."""

    def __init__(self, kind: str, postgres: bool) -> None:
        self.kind = kind
        self.postgres = postgres
        self.keys = array("d")
        # PostgreSQL's epoch is exact: it is the key itself. SQLite's is julianday's.
        self.epochs = self.keys if postgres else array("d")
        self.seconds = array("d")

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, points: list[Point]) -> None:
        """Merge ``points``: appended when they are later than all before (the usual case,
        positions being nearly in time order), else merged with the tail they overlap."""
        if not points:
            return
        points.sort(key=itemgetter(0))
        start = bisect_right(self.keys, points[0][0])
        if start < len(self.keys):
            tail = zip(self.keys[start:], self.epochs[start:], self.seconds[start:], strict=True)
            points = sorted([*tail, *points], key=itemgetter(0))
            del self.keys[start:], self.seconds[start:]
            if not self.postgres:
                del self.epochs[start:]
        self.keys.extend(p[0] for p in points)
        if not self.postgres:
            self.epochs.extend(p[1] for p in points)
        self.seconds.extend(p[2] for p in points)

    def percentiles(self, window: Window) -> list[Durations]:
        """Count and percentiles of each bucket of ``window`` that has durations."""
        origin, width = window.since.timestamp(), float(window.width)
        epochs = self.epochs
        whole: Callable[[float], int] = math.floor if self.postgres else int
        indexes = range(len(self.keys))

        def bucket(index: int) -> int:  # the SQL path's arithmetic, so the same bucket
            return whole((epochs[index] - origin) / width)

        low = bisect_left(self.keys, origin)
        high = bisect_left(self.keys, window.until.timestamp())
        found = []
        while low < high:  # a bucket is monotonic in time: bisect for its end
            number = bucket(low)
            end = bisect_left(indexes, number + 1, low, high, key=bucket)
            values = sorted(self.seconds[low:end])
            ps = (percentile(values, p) for p in PERCENTILES)
            found.append(Durations(number, self.kind, end - low, *ps))
            low = end
        return found


class LatencyRollup:
    """Each attempt's queue wait and run time, read from the log by position.

    Built by `start` in a background thread (the chart uses the SQL path until it is
    ready); each `latency` call then catches up with the events appended since.
    """

    def __init__(self, queries: DashboardQueries) -> None:
        self.queries = queries
        self.postgres = queries.postgres
        self.position = 0
        self.waits = Series("wait", self.postgres)
        self.runs = Series("run", self.postgres)
        self._ready_at: dict[str, float | None] = {}
        """Unfinished job → the ``available_at`` of its latest event (None: it has none)."""
        self._started: dict[str, dict[Any, float]] = {}
        """Unfinished job → attempt → its start, until the attempt's outcome."""
        self._lock = threading.Lock()
        """Held while the arrays change or are read (a catch-up, a chart)."""
        self._starting = threading.Lock()
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._builder: threading.Thread | None = None
        self._sql = _catch_up_sql(queries)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def start(self) -> None:
        """Build in a background thread, unless built or building already."""
        with self._starting:
            if self.ready or (self._builder is not None and self._builder.is_alive()):
                return
            self._stop.clear()
            self._builder = threading.Thread(
                target=self._build, name="jobtrail-latency-rollup", daemon=True
            )
            self._builder.start()

    def stop(self) -> None:
        self._stop.set()
        if self._builder is not None:
            self._builder.join(timeout=10)

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    def _build(self) -> None:
        started = time.monotonic()
        try:
            events = self.catch_up()
        except Exception:
            log.exception("web: building the latency rollup failed; the SQL path serves")
            return
        if self._stop.is_set():
            return
        self._ready.set()
        log.info(
            "web: latency rollup built from %d events in %.1f s (%d waits, %d runs)",
            events,
            time.monotonic() - started,
            len(self.waits),
            len(self.runs),
        )

    def latency(self, window: Window) -> list[Durations] | None:
        """The chart's durations, as `DashboardQueries.latency` finds them; None (and a
        build started) until the rollup is built."""
        if not self.ready:
            self.start()
            return None
        self.catch_up()
        with self._lock:
            return self.waits.percentiles(window) + self.runs.percentiles(window)

    def catch_up(self) -> int:
        """Read the events after the last position seen; how many were read.

        Whatever was read is kept even when the read fails half way (the position moves
        with it), so the next call resumes where this one stopped.
        """
        read = 0
        with self._lock:
            waits: list[Point] = []
            runs: list[Point] = []
            try:
                for row in self._rows_after(self.position):
                    self._apply(row, waits, runs)
                    self.position = row[0]
                    read += 1
                    if read % FLUSH == 0:
                        self.waits.add(waits)
                        self.runs.add(runs)
                        waits, runs = [], []
                        if self._stop.is_set():
                            break
            finally:
                self.waits.add(waits)
                self.runs.add(runs)
        return read

    def _apply(self, row: Sequence[Any], waits: list[Point], runs: list[Point]) -> None:
        """One event: a start is paired with the ready time of the event before it (its
        JobQueued or JobRetryScheduled), an outcome with the start of its attempt."""
        _, job_id, kind, key, epoch, ready, attempt = row
        if kind == "JobStarted":
            before = self._ready_at.get(job_id)
            if before is not None:
                waits.append((key, epoch, epoch - before))
            if attempt is not None:
                self._started.setdefault(job_id, {})[attempt] = epoch
        elif kind in RUN_OUTCOMES and attempt is not None:
            attempts = self._started.get(job_id)
            begun = attempts.pop(attempt, None) if attempts else None
            if begun is not None:
                runs.append((key, epoch, epoch - begun))
        if kind in TERMINAL_EVENT_TYPES:  # nothing follows a terminal event
            self._ready_at.pop(job_id, None)
            self._started.pop(job_id, None)
        else:
            self._ready_at[job_id] = ready

    def _rows_after(self, position: int) -> Iterator[Sequence[Any]]:
        """(position, job_id, type, exact time, epoch, ready time, attempt) of each event
        after ``position``, in position order, streamed."""
        with translated_errors(), self.queries.engine.connect() as conn:
            if not self.postgres:
                query = text(self._sql).columns(occurred_at=UtcDateTime())
                for row in conn.execute(query, {"after": position}):
                    at = row[3].timestamp()
                    yield (row[0], row[1], row[2], at, *row[4:])
                return
            with conn.begin():
                driver = conn.connection.driver_connection
                with driver.cursor(name="jobtrail_latency_rollup") as cursor:  # type: ignore[union-attr]
                    cursor.execute(self._sql, {"after": position})
                    while rows := cursor.fetchmany(FETCH):
                        yield from rows


def _catch_up_sql(queries: DashboardQueries) -> str:
    """The events' times through the SQL path's own expressions (`DashboardQueries`)."""
    q = queries
    ready = q.iso_epoch(q.json_text("data", "available_at"))
    attempt = q.json_text("data", "attempt")
    if q.postgres:  # the epoch is exact: it is the time the window is cut by, too
        epoch = q.epoch("occurred_at")
        return f"""SELECT position, job_id, type, {epoch}, {epoch}, {ready}, {attempt}
            FROM job_events WHERE position > %(after)s ORDER BY position"""
    return f"""SELECT position, job_id, type, occurred_at, {q.epoch("occurred_at")},
            {ready}, {attempt} FROM job_events WHERE position > :after ORDER BY position"""
