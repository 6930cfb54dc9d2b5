"""Waking idle workers and the relay, without PostgreSQL: the channels, the done queue's
wake, the idle sleep, the poll settings, and the relay's wait (on SQLite, with a wakeup
source the test rings by hand)."""

from __future__ import annotations

import contextlib
import importlib
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from jobtrail.adapters.bootstrap import connect
from jobtrail.adapters.kafka.publisher import KafkaSettings
from jobtrail.adapters.kafka.relay import Relay, RelaySettings, run_in_thread
from jobtrail.adapters.sql import wakeup
from jobtrail.processors.engine.settings import InvalidWorkerSettings, WorkerSettings
from jobtrail.processors.engine.wakeup import DoneQueue, StopFlag, idle_timeout

from tests.integration.test_relay import FlakyPublisher
from tests.integration.test_relay_kafka import last_position
from tests.integration.test_worker import wait_for

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def test_the_channels_are_the_ones_migration_0010_notifies() -> None:
    migration = importlib.import_module(
        "jobtrail.adapters.sql.migrations.versions.0010_wakeup_notify"
    )
    assert migration.JOB_AVAILABLE == wakeup.JOB_AVAILABLE
    assert migration.EVENTS_APPENDED == wakeup.EVENTS_APPENDED
    assert migration.EVERY_QUEUE == wakeup.EVERY_QUEUE
    assert f"pg_notify('{wakeup.JOB_AVAILABLE}', NEW.queue)" in migration.UPGRADE
    assert f"pg_notify('{wakeup.EVENTS_APPENDED}', '')" in migration.UPGRADE


# ------------------------------------------------------------------------ the done queue


def test_a_wake_before_the_wait_ends_it_once() -> None:
    done: DoneQueue[str] = DoneQueue()
    done.wake()  # a notification while the worker was busy
    started = time.monotonic()
    assert done.get_or_wake(30) is None
    assert time.monotonic() - started < 5
    assert done.get_or_wake(0.05) is None  # consumed: this one times out
    assert time.monotonic() - started >= 0.05


def test_a_result_comes_first_and_the_wake_is_kept() -> None:
    done: DoneQueue[str] = DoneQueue()
    done.put("finished")
    done.wake()
    assert done.get_or_wake(30) == "finished"
    started = time.monotonic()
    assert done.get_or_wake(30) is None
    assert time.monotonic() - started < 5


def test_a_wake_from_another_thread_ends_a_long_wait() -> None:
    done: DoneQueue[str] = DoneQueue()
    threading.Timer(0.2, done.wake).start()
    started = time.monotonic()
    assert done.get_or_wake(30) is None
    assert 0.15 < time.monotonic() - started < 5


def test_stopping_wakes_the_wait() -> None:
    done: DoneQueue[str] = DoneQueue()
    stop = StopFlag(done.wake)
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    assert done.get_or_wake(30) is None
    assert stop.is_set() and time.monotonic() - started < 5


# ------------------------------------------------------------------------ the idle sleep


@pytest.mark.parametrize(
    ("poll", "reap_in", "due_in", "expected"),
    [
        (1.0, 10.0, None, 1.0),  # nothing due: the fallback poll
        (None, 10.0, None, 10.0),  # no poll: the reap
        (1.0, 10.0, 0.4, 0.401),  # a delayed job due first, and a millisecond
        (None, 3600.0, 90.0, 90.001),
        (1.0, 10.0, -5.0, 1.0),  # due already: held back, not a reason to spin
        (1.0, 10.0, 0.0, 1.0),
        (5.0, -1.0, None, 0.0),  # the reap is late
    ],
)
def test_an_idle_worker_sleeps_until_the_first_of_poll_reap_and_due_time(
    poll: float | None, reap_in: float, due_in: float | None, expected: float
) -> None:
    due = None if due_in is None else NOW + timedelta(seconds=due_in)
    assert idle_timeout(poll, reap_in, due, NOW) == pytest.approx(expected)


# ------------------------------------------------------------------------ settings


def test_the_poll_defaults_to_50_ms_without_push_and_1_s_with_it() -> None:
    settings = WorkerSettings()
    assert settings.idle_poll(pushed=False) == 0.05
    assert settings.idle_poll(pushed=True) == 1.0
    assert settings.busy_poll == 0.05
    given = WorkerSettings(poll_seconds=0.2)
    assert given.idle_poll(pushed=True) == given.idle_poll(pushed=False) == given.busy_poll == 0.2
    push_only = WorkerSettings(push_only=True)
    assert push_only.idle_poll(pushed=True) is None
    assert push_only.busy_poll == 0.05


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"push_only": 1}, "Worker setting push_only: must be True or False, not 1."),
        (
            {"push_only": True, "poll_seconds": 1.0},
            "Worker setting poll_seconds: must be None with push_only (which never polls).",
        ),
        (
            {"poll_seconds": 0},
            "Worker setting poll_seconds: must be more than 0 and at most 60 seconds, not 0.",
        ),
    ],
)
def test_a_poll_setting_that_cannot_work_is_one_line(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidWorkerSettings) as raised:
        WorkerSettings(**values)  # type: ignore[arg-type]
    assert str(raised.value) == message


def test_push_only_is_refused_where_nothing_pushes(sqlite_url: str) -> None:
    trail = connect(sqlite_url)
    try:
        with pytest.raises(InvalidWorkerSettings, match="push_only: needs push wakeups"):
            trail.worker(WorkerSettings(push_only=True))
    finally:
        trail.close()


def test_an_idle_worker_stops_at_once_however_long_its_poll(sqlite_url: str) -> None:
    trail = connect(sqlite_url)
    worker = trail.worker(WorkerSettings(poll_seconds=60, reap_seconds=3600))
    thread = threading.Thread(target=worker.run, daemon=True)
    try:
        thread.start()
        time.sleep(0.5)  # idle, asleep for a minute
        stopped = time.monotonic()
        worker.stop()
        thread.join(timeout=30)
        assert time.monotonic() - stopped < 5
    finally:
        worker.stop()
        thread.join(timeout=60)
        trail.close()


# ------------------------------------------------------------------------ the relay


class Bell:
    """A wakeup source the test rings by hand."""

    def __init__(self) -> None:
        self.wakes: list[Callable[[], None]] = []

    @contextlib.contextmanager
    def __call__(self, wake: Callable[[], None]) -> Iterator[None]:
        self.wakes.append(wake)
        yield
        self.wakes.remove(wake)

    def ring(self) -> None:
        for wake in self.wakes:
            wake()


def test_the_relay_reads_when_woken_and_stops_at_once(sqlite_url: str) -> None:
    trail = connect(sqlite_url)
    bell = Bell()
    wired = trail.relay(KafkaSettings("127.0.0.1:9", "unused"))
    settings = RelaySettings(poll=600, lease=3600)
    publisher = FlakyPublisher()
    relay = Relay(
        wired.source, wired.positions, publisher, trail.service.clock, settings, None, bell
    )
    thread = run_in_thread(relay)
    try:
        wait_for(lambda: relay.caught_up and bell.wakes != [], 10, "the relay to catch up")
        trail.submit("asset_image_generation")
        time.sleep(0.5)
        assert publisher.sent == []  # asleep: it does not poll
        bell.ring()
        wait_for(lambda: relay.position == last_position(trail), 5, "the woken relay")
        stopped = time.monotonic()
        relay.stop()
        thread.join(timeout=30)
        assert time.monotonic() - stopped < 5
        assert bell.wakes == []
    finally:
        relay.stop()
        thread.join(timeout=60)
        trail.close()
