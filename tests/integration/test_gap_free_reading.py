"""Reading "all events after position P" while others append must never skip an event.

With a plain sequence, a transaction that took position 10 can commit after one that
took 11; a reader that saw 11 and moved its cursor past it would never see 10. The store
orders positions by commit (see docs/architecture.md); this test hammers that.
"""

from __future__ import annotations

import threading

from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.domain.events import Event
from jobtrail.domain.services import JobSpec

APPENDERS = 8
JOBS_PER_APPENDER = 15


def test_a_concurrent_reader_sees_every_event_exactly_once(trail: Jobtrail) -> None:
    errors: list[BaseException] = []
    seen: list[Event] = []

    def append() -> None:
        try:
            for _ in range(JOBS_PER_APPENDER):
                (job_id,) = trail.submit_many([JobSpec("gap", {"n": 1})])
                trail.service.start(job_id, "w", 30)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    def read() -> None:
        position = 0
        while True:
            finished = not any(t.is_alive() for t in appenders)
            batch = trail.store.read_after(position, limit=20)
            seen.extend(batch)
            if batch:
                position = batch[-1].position or position
            elif finished:
                return

    appenders = [threading.Thread(target=append) for _ in range(APPENDERS)]
    reader = threading.Thread(target=read)
    for thread in (*appenders, reader):
        thread.start()
    for thread in (*appenders, reader):
        thread.join(timeout=60)

    assert not errors
    stored = [e.position for e in trail.store.read_all()]
    read_positions = [e.position for e in seen]
    assert len(stored) == APPENDERS * JOBS_PER_APPENDER * 2
    assert read_positions == stored, (
        f"the reader missed {len(set(stored) - set(read_positions))} event(s)"
    )
