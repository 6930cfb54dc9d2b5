"""Waiting for a job's result, without a database: the channel, the poll, the wait loop."""

from __future__ import annotations

import importlib
import itertools
import threading
import time
from typing import Any

import pytest
from jobtrail.adapters.sql import waiting
from jobtrail.domain.errors import JobNotFound, WaitTimedOut

JOB = "0b6c1a8e-9c55-4c39-a7a9-4b1c0c1f0e11"


def test_the_channel_is_the_one_migration_0008_notifies() -> None:
    migration = importlib.import_module(
        "jobtrail.adapters.sql.migrations.versions.0008_job_finished_notify"
    )
    assert migration.CHANNEL == waiting.CHANNEL
    assert f"pg_notify('{waiting.CHANNEL}', NEW.id)" in migration.UPGRADE


def test_sqlite_polls_every_50_ms_at_first_growing_to_500_ms() -> None:
    intervals = list(itertools.islice(waiting.poll_intervals(), 12))
    assert intervals[0] == pytest.approx(0.05)
    assert intervals == sorted(intervals)
    assert intervals[-1] == pytest.approx(0.5)
    assert max(intervals) == pytest.approx(0.5)


def statuses(*values: str) -> waiting.Read:
    """A read returning rows with these statuses, in turn (the last one repeats)."""
    rows = iter(values)
    last = {"status": values[-1]}

    def read(job_id: str) -> dict[str, Any] | None:
        status = next(rows, last["status"])
        return {"id": job_id, "status": status}

    return read


def run(read: waiting.Read, timeout: float, wake: threading.Event | None = None) -> Any:
    deadline = time.monotonic() + timeout
    event = wake or threading.Event()
    return waiting._until_final(read, JOB, timeout, deadline, event, itertools.repeat(0.01))


def test_the_loop_returns_the_first_final_row() -> None:
    row = run(statuses("queued", "processing", "processing", "failed"), timeout=5)
    assert row == {"id": JOB, "status": "failed"}


def test_the_loop_times_out_after_a_last_read() -> None:
    calls = []

    def read(job_id: str) -> dict[str, Any]:
        calls.append(time.monotonic())
        return {"id": job_id, "status": "processing"}

    started = time.monotonic()
    with pytest.raises(WaitTimedOut) as raised:
        run(read, timeout=0.2)
    assert time.monotonic() - started >= 0.2
    assert calls[-1] - started >= 0.2  # the row was read once more at the deadline
    assert str(raised.value) == f"job {JOB} did not finish within 0.2 seconds"
    assert raised.value.context["status"] == "processing"


def test_an_unknown_job_is_not_found_at_once() -> None:
    with pytest.raises(JobNotFound):
        run(lambda job_id: None, timeout=60)


def test_a_wakeup_during_the_read_is_not_lost() -> None:
    """The event is cleared before the read, so one set during it ends the next wait."""
    wake = threading.Event()
    reads = 0

    def read(job_id: str) -> dict[str, Any]:
        nonlocal reads
        reads += 1
        if reads == 1:
            wake.set()  # the job finishes (and is notified) while it is being read
            return {"id": job_id, "status": "processing"}
        return {"id": job_id, "status": "completed"}

    deadline = time.monotonic() + 60
    started = time.monotonic()
    row = waiting._until_final(read, JOB, 60, deadline, wake, itertools.repeat(30.0))
    assert row["status"] == "completed"
    assert time.monotonic() - started < 5  # not the 30 s fallback


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), 8 * 86_400])
def test_a_timeout_outside_the_range_is_refused(timeout: float) -> None:
    from jobtrail.adapters.sql.engine import create
    from jobtrail.domain.errors import InvalidField

    engine = create("sqlite://")
    with pytest.raises(InvalidField, match="timeout"):
        waiting.wait_for(engine, lambda job_id: None, JOB, timeout)


def test_a_listener_does_not_keep_its_engine_alive() -> None:
    import gc

    from jobtrail.adapters.sql.engine import create

    engine = create("postgresql://jobtrail@127.0.0.1:5432/nowhere")  # never connects
    listener = waiting.listener_for(engine)
    assert waiting.listener_for(engine) is listener  # one per engine
    del engine
    gc.collect()
    assert listener not in waiting._LISTENERS.values()
