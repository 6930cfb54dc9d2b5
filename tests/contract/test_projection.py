"""The `job` projection contract, run against every backend."""

from __future__ import annotations

from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.domain.errors import InsufficientCredits, UpstreamTimeout
from jobtrail.domain.retry import RetryPolicy
from jobtrail.domain.services import JobSpec

from tests.helpers import table_fingerprint

OLD_SYSTEM_QUERY_COLUMNS = ("id", "status", "error_message", "completed_at", "created_at")


def mixed_history(trail: Jobtrail) -> list[str]:
    """Jobs in every status, with retries, progress and payloads of every JSON kind."""
    trail.service.policy = RetryPolicy(base_delay=0)
    ids = trail.submit_many(
        [
            JobSpec("shot_video_generation", {"credits": 10, "tags": ["a", "b"], "f": 1.5}),
            JobSpec("asset_image_generation", {"credits": 0}, max_attempts=1),
            JobSpec("shot_video_generation", {"nested": {"x": None}}, max_attempts=3),
            JobSpec("asset_image_generation", {}, priority=5, delay=3600),
            JobSpec("shot_video_generation", {"ü": "ñ"}),
        ]
    )
    done, broke, retried, later, cancelled = ids
    service = trail.service
    service.start(done, "w1", 30)
    service.report_progress(done, 1, 50, "half way")
    service.complete(done, 1, {"video": "s3://v.mp4"})
    service.start(broke, "w1", 30)
    service.fail(broke, InsufficientCredits(), 1)
    service.start(retried, "w2", 30)
    service.fail(retried, UpstreamTimeout(), 1)
    service.start(retried, "w2", 30)
    trail.cancel(cancelled, "changed my mind")
    return ids


def test_rebuild_leaves_the_table_exactly_as_it_was(trail: Jobtrail) -> None:
    mixed_history(trail)
    before = table_fingerprint(trail)
    rows_before = trail.queries.all_rows()

    assert trail.rebuild() == 5

    assert table_fingerprint(trail) == before
    assert trail.queries.all_rows() == rows_before


def test_rebuild_restores_a_damaged_table(trail: Jobtrail) -> None:
    ids = mixed_history(trail)
    before = table_fingerprint(trail)
    with trail.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE job SET status = 'completed', error_message = NULL")
        conn.exec_driver_sql(f"DELETE FROM job WHERE id = '{ids[0]}'")
    assert table_fingerprint(trail) != before

    trail.rebuild()

    assert table_fingerprint(trail) == before


def test_statuses_and_columns_follow_the_log(trail: Jobtrail) -> None:
    done, broke, retried, later, cancelled = mixed_history(trail)
    rows = {row["id"]: row for row in trail.queries.all_rows()}
    assert {job_id: rows[job_id]["status"] for job_id in rows} == {
        done: "completed",
        broke: "failed",
        retried: "processing",
        later: "queued",
        cancelled: "cancelled",
    }
    assert rows[done]["progress"] == 100 and rows[done]["result"] == {"video": "s3://v.mp4"}
    assert rows[broke]["error_message"] == "insufficient credits"
    assert rows[retried]["attempt"] == 2 and rows[retried]["error_code"] == "upstream_timeout"
    assert rows[later]["available_at"] > rows[later]["created_at"]
    for job_id in (done, broke, cancelled):
        assert rows[job_id]["completed_at"] is not None
    for job_id in (retried, later):
        assert rows[job_id]["completed_at"] is None


def test_stats_count_what_the_table_holds(trail: Jobtrail) -> None:
    mixed_history(trail)
    stats = trail.stats().as_dict()
    assert stats["total"] == 5
    assert stats["by_status"] == {
        "cancelled": 1,
        "completed": 1,
        "failed": 1,
        "processing": 1,
        "queued": 1,
    }
    assert stats["failure_rate"] == 1 / 3
    assert stats["error_codes"] == {"insufficient_credits": 1}
    assert stats["duration_seconds"]["p50"] is not None
