"""Reading "all events after position P" while others append must never skip an event.

With a plain sequence, a transaction that took position 10 can commit after one that
took 11; a reader that saw 11 and moved its cursor past it would never see 10. The store
orders positions by commit (see docs/architecture.md); this test hammers that.
"""

from __future__ import annotations

import threading
import time

from adapters.api import Jobtrail
from domain.events import Event
from domain.services import JobSpec

APPENDERS = 8
SECONDS = 3.0


def test_a_concurrent_reader_sees_every_event_exactly_once(trail: Jobtrail) -> None:
    stop = threading.Event()
    errors: list[BaseException] = []
    seen: list[Event] = []

    def append() -> None:
        try:
            while not stop.is_set():
                (job_id,) = trail.submit_many([JobSpec("gap", {"n": 1})])
                trail.service.start(job_id, "w", 30)
        except BaseException as error:  # noqa: BLE001 - reported by the test below
            errors.append(error)

    def read() -> None:
        position = 0
        while True:
            finished = stop.is_set() and not any(t.is_alive() for t in appenders)
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
    time.sleep(SECONDS)
    stop.set()
    for thread in (*appenders, reader):
        thread.join(timeout=60)

    assert not errors
    stored = [e.position for e in trail.store.read_all()]
    read_positions = [e.position for e in seen]
    assert len(stored) > APPENDERS * 10, "the appenders barely ran"
    assert read_positions == stored, (
        f"the reader missed {len(set(stored) - set(read_positions))} event(s)"
    )
