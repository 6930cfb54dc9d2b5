"""Small helpers shared by the database tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.sql.schema import job_events
from jobtrail.domain.events import TERMINAL_EVENT_TYPES, Event
from jobtrail.domain.job import Job
from jobtrail.domain.ports import Clock
from jobtrail.projections.job_table import fold
from sqlalchemy import func, select, text


def event_count(trail: Jobtrail) -> int:
    with trail.engine.connect() as conn:
        count: int = conn.execute(select(func.count()).select_from(job_events)).scalar_one()
        return count


def table_fingerprint(trail: Jobtrail) -> str:
    """The `job` table as text, row by row in id order: equal means byte-for-byte equal."""
    with trail.engine.connect() as conn:
        if trail.engine.dialect.name == "postgresql":
            digest: str = conn.execute(
                text("SELECT coalesce(md5(string_agg(j::text, '|' ORDER BY id)), '') FROM job j")
            ).scalar_one()
            return digest
        rows = conn.exec_driver_sql("SELECT * FROM job ORDER BY id").fetchall()
        return "\n".join(repr(tuple(row)) for row in rows)


def check_history(job_id: str, events: Sequence[Event]) -> None:
    """The invariants every stored history keeps (raises AssertionError otherwise)."""
    assert [e.version for e in events] == list(range(1, len(events) + 1)), "versions have gaps"
    terminal = [i for i, e in enumerate(events) if e.type in TERMINAL_EVENT_TYPES]
    assert len(terminal) <= 1, f"job {job_id} has {len(terminal)} terminal events"
    assert not terminal or terminal[0] == len(events) - 1, "a terminal event is not the last"
    Job.from_history(job_id, events)  # the one Machine accepts the sequence
    previous = ""
    for event in events:
        assert event.prev_hash == previous, f"broken chain at version {event.version}"
        assert event.compute_hash() == event.hash, f"hash mismatch at version {event.version}"
        previous = event.hash


def check_projection(trail: Jobtrail, job_id: str) -> None:
    """The live row equals the row a rebuild would make from the log."""
    events = trail.store.load(job_id)
    assert trail.queries.get(job_id) == fold(events)


class SetClock(Clock):
    """The service's clock, set by the test (``moment`` may be moved between commands)."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment


class SteppingClock(SetClock):
    """Each reading one second after the previous: every event has a moment of its own."""

    def now(self) -> datetime:
        self.moment += timedelta(seconds=1)
        return self.moment


def jobtrail_process(
    url: str, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """The `jobtrail` command as users run it: a process of its own, on ``url`` only."""
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("JOBTRAIL_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "jobtrail", "--db", url, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
