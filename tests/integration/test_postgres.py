"""PostgreSQL-only behaviour: the operators' old query, triggers, lost connections."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.sql.appends import APPEND_LOCK_KEY
from jobtrail.adapters.sql.engine import normalise_url
from jobtrail.adapters.sql.errors import APPEND_ONLY_SQLSTATE
from jobtrail.domain.errors import DatabaseUnavailable, InsufficientCredits, StorageError
from jobtrail.domain.job import Outcome
from sqlalchemy import event
from sqlalchemy.engine import make_url

from tests.helpers import event_count

pytestmark = pytest.mark.postgres

OLD_SYSTEM_QUERY = """
SELECT id, status, error_message,
       EXTRACT(EPOCH FROM (completed_at - created_at)) AS duration_seconds
FROM job WHERE id = %s
"""


def raw(trail: Jobtrail) -> psycopg.Connection:
    """A plain psycopg connection as the database superuser, outside jobtrail."""
    url = make_url(normalise_url(str(trail.engine.url.render_as_string(hide_password=False))))
    return psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True
    )


def test_the_old_systems_query_runs_unchanged(pg_trail: Jobtrail) -> None:
    job_id = pg_trail.submit("shot_video_generation", {"credits": 0})
    pg_trail.service.start(job_id, "w1", 30)
    pg_trail.service.fail(job_id, InsufficientCredits(), 1)
    with raw(pg_trail) as conn:
        row = conn.execute(OLD_SYSTEM_QUERY, (job_id,)).fetchone()
    assert row is not None
    found_id, status, message, seconds = row
    assert (found_id, status) == (job_id, "failed")
    assert "insufficient credits" in message
    assert 0 <= float(seconds) < 5


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE job_events SET data = '{}'",
        "DELETE FROM job_events WHERE version = 1",
        "TRUNCATE job_events",
    ],
)
def test_the_superuser_cannot_rewrite_the_log_by_hand(pg_trail: Jobtrail, statement: str) -> None:
    pg_trail.submit("t", {"a": 1})
    with raw(pg_trail) as conn, pytest.raises(psycopg.Error, match="append-only") as raised:
        conn.execute(statement)
    assert raised.value.sqlstate == APPEND_ONLY_SQLSTATE  # what the store maps, not the text
    assert raised.value.diag.table_name == "job_events"
    assert event_count(pg_trail) == 1


def test_lost_connections_are_replaced_without_losing_events(pg_trail: Jobtrail) -> None:
    first = pg_trail.submit("t")
    with raw(pg_trail) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    second = pg_trail.submit("t")
    assert {r["id"] for r in pg_trail.jobs()} == {first, second}
    assert event_count(pg_trail) == 2


def test_a_connection_killed_mid_append_writes_nothing_and_the_retry_writes_once(
    pg_trail: Jobtrail,
) -> None:
    job_id = pg_trail.submit("t", max_attempts=1)
    pg_trail.service.start(job_id, "w1", 30)
    failures: list[BaseException] = []

    def complete() -> None:
        try:
            pg_trail.service.complete(job_id, 1, "done")
        except BaseException as error:  # noqa: BLE001 - inspected below
            failures.append(error)

    with raw(pg_trail) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (APPEND_LOCK_KEY,))
        worker = threading.Thread(target=complete)
        worker.start()
        victim = wait_for_lock_waiter(holder)
        holder.execute("SELECT pg_terminate_backend(%s)", (victim,))
        worker.join(timeout=30)
        holder.execute("SELECT pg_advisory_unlock(%s)", (APPEND_LOCK_KEY,))

    assert len(failures) == 1 and isinstance(failures[0], DatabaseUnavailable)
    assert pg_trail.get(job_id)["status"] == "processing"
    assert [e.type for e in pg_trail.history(job_id)] == ["JobQueued", "JobStarted"]

    assert pg_trail.service.complete(job_id, 1, "done") is Outcome.RECORDED
    assert pg_trail.service.complete(job_id, 1, "done") is Outcome.ALREADY_FINISHED
    assert [e.type for e in pg_trail.history(job_id)] == ["JobQueued", "JobStarted", "JobCompleted"]


def wait_for_lock_waiter(conn: psycopg.Connection, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND wait_event = 'advisory'"
        ).fetchone()
        if row:
            return int(row[0])
        time.sleep(0.01)
    raise AssertionError("no append waited for the lock")


def test_a_worker_s_held_connection_is_reused_and_replaced_after_an_error(
    pg_trail: Jobtrail,
) -> None:
    """Inside `holding`, turns skip the pool (and its ping); a dead connection costs one
    failed call, and the next one takes a fresh connection."""
    checkouts: list[object] = []
    event.listen(pg_trail.engine, "checkout", lambda *args: checkouts.append(args[0]))
    queue = pg_trail.queue

    def claim_nothing() -> None:
        queue.claim(1, ["nothing of this type"], lambda job: Outcome.RECORDED)

    with queue.holding():
        for _ in range(3):
            claim_nothing()
        assert len(checkouts) == 1
        with raw(pg_trail) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        with pytest.raises(StorageError):
            claim_nothing()
        claim_nothing()
        assert len(checkouts) == 2
    assert pg_trail.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
