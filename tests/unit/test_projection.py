"""The `job` table projection (fold, live assignments, rebuild) and the statistics."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import pytest
from jobtrail.domain.errors import UpstreamTimeout
from jobtrail.domain.events import TERMINAL_EVENT_TYPES, Event
from jobtrail.domain.job import Job
from jobtrail.domain.status import JobStatus
from jobtrail.projections import job_table, stats
from jobtrail.projections.job_table import COLUMNS, assignments, fold, new_row, rows_from_log

from tests.unit import histories
from tests.unit.histories import ALL_HISTORIES, T0, at

# ---------------------------------------------------------------------- job table


def _live_row(events: list[Event]) -> dict[str, Any]:
    """What live appends do: insert the JobQueued row, then update it per event."""
    first, *rest = events
    row = new_row()
    row.update(assignments(first))
    for event in rest:
        row.update(assignments(event))
    return row


def _job_row(job: Job) -> dict[str, Any]:
    return {column: getattr(job, column) for column in COLUMNS}


@pytest.mark.parametrize("name", sorted(ALL_HISTORIES))
def test_fold_equals_the_live_path(name: str) -> None:
    events = ALL_HISTORIES[name]().pending
    assert fold(events) == _live_row(events)


@pytest.mark.parametrize("name", sorted(ALL_HISTORIES))
def test_fold_equals_the_aggregates_fields(name: str) -> None:
    job = ALL_HISTORIES[name]()
    assert fold(job.pending) == _job_row(job)


@pytest.mark.parametrize("name", sorted(ALL_HISTORIES))
def test_status_after_every_prefix_follows_the_machine(name: str) -> None:
    events = ALL_HISTORIES[name]().pending
    for n in range(1, len(events) + 1):
        replayed = Job.from_history(events[0].job_id, events[:n])
        row = fold(events[:n])
        assert row["status"] == replayed.status
        assert row["version"] == n
        assert row["updated_at"] == events[n - 1].occurred_at


def test_first_event_fills_the_row() -> None:
    event = histories.queued("j-1").pending[0]
    row = assignments(event)
    assert row["id"] == "j-1"
    assert row["status"] == "queued"
    assert (row["job_type"], row["priority"], row["max_attempts"]) == ("video", 5, 3)
    assert (row["attempt"], row["progress"], row["version"]) == (0, 0, 1)
    assert row["created_at"] == T0
    assert set(row) <= set(COLUMNS)


def test_assignments_only_touch_columns() -> None:
    for build in ALL_HISTORIES.values():
        for event in build().pending:
            assert set(assignments(event)) <= set(COLUMNS)
            assert "lease_expires_at" not in assignments(event)


def test_progress_keeps_the_status() -> None:
    events = histories.completed().pending
    progressed = next(e for e in events if e.type == "JobProgressed")
    assert "status" not in assignments(progressed)
    assert assignments(progressed)["progress"] == 40


@pytest.mark.parametrize(
    ("builder", "status", "completed_at"),
    [
        (histories.completed, "completed", at(3.5)),
        (histories.failed, "failed", at(2)),
        (histories.cancelled, "cancelled", at(2)),
    ],
)
def test_every_terminal_event_sets_completed_at(
    builder: Callable[[], Job], status: str, completed_at: datetime
) -> None:
    events = builder().pending
    assert events[-1].type in TERMINAL_EVENT_TYPES
    row = fold(events)
    assert row["status"] == status
    assert row["completed_at"] == completed_at
    assert row["updated_at"] == completed_at
    assert row["version"] == len(events)
    assert fold(events[:-1])["completed_at"] is None


def test_a_scheduled_retry_leaves_completed_at_empty() -> None:
    job = histories.processing()
    job.fail(UpstreamTimeout(), 1, now=at(2), policy=histories.policy())
    row = fold(job.pending)
    assert row["status"] == "queued"
    assert row["completed_at"] is None
    assert row["error_code"] == "upstream_timeout"
    assert row["worker_id"] is None
    assert row["available_at"] == job.available_at


def test_old_systems_duration_query_works_for_failed_jobs() -> None:
    row = fold(histories.failed().pending)
    assert (row["completed_at"] - row["created_at"]).total_seconds() == 2.0
    assert row["error_message"] == "insufficient credits"


def _grouped(jobs: Iterable[Job]) -> list[Event]:
    return [event for job in jobs for event in job.pending]


def test_rows_from_log_yields_one_row_per_job() -> None:
    jobs = [builder(f"job-{name}") for name, builder in sorted(ALL_HISTORIES.items())]
    rows = list(rows_from_log(_grouped(jobs)))
    assert [row["id"] for row in rows] == [job.id for job in jobs]
    for row, job in zip(rows, jobs, strict=True):
        assert row == fold(job.pending)
        assert row == _job_row(job)


def test_rows_from_log_with_single_event_jobs() -> None:
    jobs = [histories.queued(f"q-{i}") for i in range(3)]
    rows = list(rows_from_log(_grouped(jobs)))
    assert [row["id"] for row in rows] == ["q-0", "q-1", "q-2"]
    assert all(row["status"] == "queued" for row in rows)


def test_rows_from_an_empty_log() -> None:
    assert list(rows_from_log([])) == []


def test_new_row_is_all_empty() -> None:
    row = job_table.new_row()
    assert list(row) == list(COLUMNS)
    assert all(value is None for value in row.values())
    row["status"] = "queued"
    assert job_table.new_row()["status"] is None


# --------------------------------------------------------------------- statistics


def _row(
    status: str, job_type: str, error_code: str | None = None, seconds: float | None = None
) -> dict[str, Any]:
    return {
        "status": status,
        "job_type": job_type,
        "error_code": error_code,
        "created_at": T0,
        "completed_at": None if seconds is None else T0 + timedelta(seconds=seconds),
    }


ROWS = [
    _row("completed", "video", seconds=10),
    _row("completed", "image", seconds=20),
    _row("failed", "video", "insufficient_credits", seconds=30),
    _row("failed", "image", "upstream_timeout", seconds=40),
    _row("failed", "image", "upstream_timeout", seconds=45),
    _row("cancelled", "video", seconds=50),
    _row("queued", "image", "rate_limited"),  # a scheduled retry keeps its error
    _row("processing", "video"),
]


def test_compute_counts_by_status_and_type() -> None:
    result = stats.compute(ROWS)
    assert result.total == 8
    assert result.by_status == {
        "completed": 2,
        "failed": 3,
        "cancelled": 1,
        "queued": 1,
        "processing": 1,
    }
    assert result.by_type == {
        "video": {"completed": 1, "failed": 1, "cancelled": 1, "processing": 1},
        "image": {"completed": 1, "failed": 2, "queued": 1},
    }


def test_failure_rate_is_failed_over_finished() -> None:
    assert stats.compute(ROWS).failure_rate == pytest.approx(3 / 6)


@pytest.mark.parametrize(
    "rows", [[], [_row("queued", "video"), _row("processing", "image", "rate_limited")]]
)
def test_failure_rate_is_none_when_nothing_finished(rows: list[dict[str, Any]]) -> None:
    assert stats.compute(rows).failure_rate is None


def test_failure_rate_zero_when_nothing_failed() -> None:
    assert stats.compute([_row("completed", "video", seconds=1)]).failure_rate == 0.0


def test_error_codes_count_only_failed_jobs() -> None:
    result = stats.compute([*ROWS, _row("failed", "video", None, seconds=1)])
    assert result.error_codes == {"upstream_timeout": 2, "insufficient_credits": 1}
    assert "rate_limited" not in result.error_codes


def test_durations_are_from_creation_to_a_terminal_state() -> None:
    result = stats.compute(ROWS)
    assert sorted(result.durations) == [10, 20, 30, 40, 45, 50]
    assert result.duration_percentiles() == {"p50": 30, "p95": 50, "p99": 50}


def test_as_dict() -> None:
    summary = stats.compute(ROWS).as_dict()
    assert summary["total"] == 8
    assert list(summary["by_status"]) == sorted(summary["by_status"])
    assert list(summary["by_type"]) == ["image", "video"]
    assert list(summary["error_codes"]) == ["upstream_timeout", "insufficient_credits"]
    assert summary["failure_rate"] == pytest.approx(0.5)
    assert summary["duration_seconds"]["p50"] == 30


def test_stats_over_projected_rows() -> None:
    jobs = [builder(f"job-{name}") for name, builder in sorted(ALL_HISTORIES.items())]
    result = stats.compute(rows_from_log(_grouped(jobs)))
    assert result.total == len(jobs)
    assert result.by_status[JobStatus.FAILED.value] == 2  # failed, retries_exhausted
    assert result.by_status[JobStatus.COMPLETED.value] == 2
    assert result.error_codes == {"insufficient_credits": 1, "upstream_timeout": 1}
    assert result.failure_rate == pytest.approx(2 / 5)


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert stats.percentile(values, 50) == 50
    assert stats.percentile(values, 95) == 95
    assert stats.percentile(values, 99) == 99
    assert stats.percentile(values, 100) == 100
    assert stats.percentile(values, 0) == 1
    assert stats.percentile([4.0], 99) == 4.0
    assert stats.percentile([1.0, 2.0, 3.0], 50) == 2.0
    assert stats.percentile([], 50) is None


def test_percentile_nearest_rank_for_every_integer_p() -> None:
    values = [float(v) for v in range(1, 101)]
    assert [stats.percentile(values, p) for p in range(1, 101)] == list(range(1, 101))
