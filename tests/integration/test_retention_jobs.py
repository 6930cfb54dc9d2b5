"""Retention from a jobtrail schedule: `jobtrail.prune` and `jobtrail.archive` run by a worker.

The schedules enqueue the jobs on their cron; a worker whose registry holds
`jobtrail.retention_processors()` runs them; what they did is checked from outside (the job
table, the archive records, `jobtrail replay --archives`). A payload they cannot use fails
the job as the requester's mistake, once, with nothing pruned or archived.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jobtrail
import pytest
from jobtrail import Registry, WorkerSettings
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.sql.schema import job, job_events
from sqlalchemy import func, select

from tests.helpers import SetClock

LONG_AGO = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def old_finished_jobs(url: str, count: int) -> list[str]:
    """Jobs that finished long ago (completed and cancelled), and one still queued."""
    trail = connect(url, clock=SetClock(LONG_AGO))
    ids = []
    for i in range(count):
        job_id = trail.submit("render", {"n": i})
        if i % 2:
            trail.cancel(job_id, "old")
        else:
            trail.service.start(job_id, "w", 60)
            trail.service.complete(job_id, 1, {"ok": i})
        ids.append(job_id)
    trail.submit("render", {"still": "queued"})
    trail.close()
    return ids


def run_retention(url: str) -> None:
    """A worker that runs only the retention processors, until the queue is empty of them."""
    worker = connect(url)
    registry = Registry(jobtrail.retention_processors(url))
    settings = WorkerSettings(until_empty=True, job_types=frozenset(registry.job_types))
    worker.worker(settings, registry).run()
    worker.close()


def count(trail: Jobtrail, table: object) -> int:
    with trail.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_scheduled_prune_and_archive_run_as_jobs(backend_url: str, tmp_path: Path) -> None:
    old = old_finished_jobs(backend_url, 6)
    folder = tmp_path / "archives"
    folder.mkdir()
    trail = connect(backend_url, clock=SetClock(datetime.now(UTC) - timedelta(minutes=1)))
    schedules = trail.schedules()
    schedules.add("prune", "* * * * *", "jobtrail.prune", {"finished_before": "30d"})
    trail.service.clock.moment = datetime.now(UTC)  # type: ignore[attr-defined]
    assert schedules.run_due() == 1
    run_retention(backend_url)
    assert count(trail, job) == 1 + 1  # the queued job, and the finished prune job itself
    prune_job = trail.jobs(job_type="jobtrail.prune")[0]
    assert prune_job["status"] == "completed" and prune_job["result"]["rows"] == len(old)

    archive_job = trail.submit("jobtrail.archive", {"before": "30d", "directory": str(folder)})
    run_retention(backend_url)
    done = trail.get(archive_job)
    assert done["status"] == "completed", done
    assert done["result"]["jobs"] == len(old)
    assert Path(done["result"]["file"]) == folder / f"archive-{archive_job}.jsonl"
    with trail.engine.connect() as conn:
        left = set(conn.execute(select(job_events.c.job_id).distinct()).scalars())
    assert not left & set(old)
    trail.close()
    replay = subprocess.run(
        [sys.executable, "-m", "jobtrail", "--db", backend_url, "replay", "--json"]
        + ["--archives", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(replay.stdout)
    assert replay.returncode == 0 and report["clean"], report["problems"]
    assert report["seals"]["archives"]["jobs"] == len(old)


@pytest.mark.parametrize(
    ("job_type", "payload", "message"),
    [
        ("jobtrail.prune", {}, "'finished_before' must be a non-empty string"),
        ("jobtrail.prune", {"finished_before": "last week"}, "is neither an ISO 8601 time"),
        ("jobtrail.archive", {"before": "30d"}, "'directory' must be a non-empty string"),
        ("jobtrail.archive", {"before": "30d", "directory": "/nowhere/at/all"}, "does not exist"),
    ],
)
def test_a_payload_retention_cannot_use_fails_the_job_once(
    backend_url: str, job_type: str, payload: dict[str, str], message: str
) -> None:
    old = old_finished_jobs(backend_url, 2)
    trail = connect(backend_url)
    job_id = trail.submit(job_type, payload)
    run_retention(backend_url)
    done = trail.get(job_id)
    assert (done["status"], done["error_code"], done["attempt"]) == ("failed", "invalid_input", 1)
    assert message in done["error_message"]
    assert {trail.get(i)["status"] for i in old} == {"completed", "cancelled"}  # all still there
    trail.close()
