"""Small helpers shared by the database tests."""

from __future__ import annotations

from collections.abc import Sequence

from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.sql.schema import job_events
from jobtrail.domain.events import TERMINAL_EVENT_TYPES, Event
from jobtrail.domain.job import Job
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
