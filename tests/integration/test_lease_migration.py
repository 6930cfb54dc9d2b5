"""Migration 0011 moves running jobs' leases into their rows, and back on downgrade.

A worker running across the upgrade keeps its lease: it can renew it, and the reaper does
not take the job from it. On both backends.
"""

from __future__ import annotations

from datetime import timedelta

from alembic import command
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.sql.migrate import _config
from jobtrail.adapters.sql.schema import LEASE_COLUMN, job
from jobtrail.domain.ports import Lease
from sqlalchemy import inspect, select, text


def migrate_to(trail: Jobtrail, revision: str) -> None:
    config = _config()
    with trail.engine.begin() as conn:
        config.attributes["connection"] = conn
        if revision == "head":
            command.upgrade(config, revision)
        else:
            command.downgrade(config, revision)


def stored_lease(trail: Jobtrail, job_id: str) -> object:
    with trail.engine.connect() as conn:
        return conn.execute(select(job.c[LEASE_COLUMN]).where(job.c.id == job_id)).scalar_one()


def test_a_running_job_keeps_its_lease_across_downgrade_and_upgrade(trail: Jobtrail) -> None:
    running = trail.submit("asset_image_generation", {})
    waiting = trail.submit("asset_image_generation", {})
    trail.service.start(running, "w1", 30)
    lease = stored_lease(trail, running)
    assert lease is not None

    migrate_to(trail, "0010")
    with trail.engine.connect() as conn:
        rows = conn.execute(text("SELECT job_id, attempt, worker_id FROM job_lease")).all()
    assert [tuple(r) for r in rows] == [(running, 1, "w1")]

    migrate_to(trail, "head")
    assert "job_lease" not in inspect(trail.engine).get_table_names()
    assert stored_lease(trail, running) == lease
    assert stored_lease(trail, waiting) is None
    now = trail.service.clock.now()
    assert trail.queue.expired(now) == []
    assert trail.queue.expired(now + timedelta(seconds=31)) == [Lease(running, 1)]
    assert trail.queue.renew("w1", [Lease(running, 1)], now + timedelta(seconds=60)) == {running}
    assert trail.queue.renew("w2", [Lease(running, 1)], now + timedelta(seconds=60)) == set()
