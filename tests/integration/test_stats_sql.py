"""`jobtrail stats` computed in the database equals `compute` over every row, on both backends.

`compute` (projections/stats.py) folding the streamed rows is the reference: the SQL path
(adapters/sql/stats_query.py) must give the same `JobStats.as_dict()`, percentiles included
to the microsecond. The rows are written straight into `job` so that the durations can be
chosen: ties, sub-second and multi-day ones, time zones other than UTC.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.sql.schema import job
from jobtrail.adapters.sql.stats_query import (
    counts_query,
    duration_percentiles,
    failed_by_code,
    percentiles_query,
)
from jobtrail.domain.errors import InvalidField
from jobtrail.projections.stats import (
    compute,
    nearest_rank_fractions,
    percentile,
    percentiles_of,
)
from sqlalchemy import insert, inspect, text
from sqlalchemy.dialects import postgresql

from tests.contract.test_projection import mixed_history
from tests.helpers import SetClock, jobtrail_process

START = datetime(2024, 3, 30, 23, 59, 59, 999_999, tzinfo=UTC)
IST = timezone(timedelta(hours=5, minutes=30))
TYPES = ("shot_video_generation", "asset_image_generation", "audio_mix")
QUEUES = ("default", "fast", "bulk")
CODES = ("upstream_timeout", "insufficient_credits", "bad_input", None, "")
FINISHED = ("completed", "failed", "cancelled")


def job_row(
    status: str,
    created_at: datetime,
    completed_at: datetime | None = None,
    *,
    job_type: str = TYPES[0],
    queue: str = "default",
    error_code: str | None = None,
    started: bool = True,
) -> dict[str, Any]:
    """A `job` row with what stats read chosen, the rest plausible."""
    return {
        "id": str(uuid.uuid4()),
        "job_type": job_type,
        "status": status,
        "priority": 0,
        "attempt": 1,
        "max_attempts": 3,
        "progress": 100 if status == "completed" else 0,
        "error_code": error_code,
        "created_at": created_at,
        "available_at": created_at,
        "started_at": created_at if started and status != "queued" else None,
        "completed_at": completed_at,
        "updated_at": completed_at or created_at,
        "version": 3,
        "queue": queue,
    }


def population(seed: int = 7) -> list[dict[str, Any]]:
    """Every type, queue and status; failed jobs with and without codes; varied durations."""
    pick = random.Random(seed)
    rows = []
    for i in range(300):
        created = START + timedelta(seconds=pick.randrange(86_400), microseconds=i)
        if i % 3 == 0:  # half a day east of UTC: the duration must not see it
            created = created.astimezone(IST)
        took = [
            timedelta(microseconds=pick.randrange(1, 999_999)),  # sub-second
            timedelta(seconds=2),  # ties
            timedelta(seconds=pick.randrange(3, 600), microseconds=pick.randrange(1_000_000)),
            timedelta(days=pick.randrange(1, 4), seconds=pick.randrange(86_400), microseconds=1),
        ][i % 4]
        status = FINISHED[pick.randrange(3)]
        rows.append(
            job_row(
                status,
                created,
                created + took,
                job_type=TYPES[i % 3],
                queue=QUEUES[pick.randrange(3)],
                error_code=pick.choice(CODES) if status == "failed" else None,
            )
        )
    unfinished = [
        job_row("queued", START, job_type=TYPES[1], queue="bulk"),
        job_row("processing", START, error_code="rate_limited"),  # not failed: not counted
        job_row("processing", START.astimezone(IST), job_type=TYPES[2], queue="fast"),
    ]
    cancelled_while_queued = job_row(
        "cancelled", START, START + timedelta(milliseconds=5), started=False
    )
    no_queue_name = job_row("completed", START, START + timedelta(seconds=2), queue="")
    return [*rows, *unfinished, cancelled_while_queued, no_queue_name]


def load(trail: Jobtrail, rows: list[dict[str, Any]]) -> None:
    with trail.engine.begin() as conn:
        conn.execute(insert(job), rows)


def reference(trail: Jobtrail, since: datetime | None = None) -> dict[str, Any]:
    """What `jobtrail stats` showed before it moved into SQL."""
    return compute(trail.queries.stream_for_stats(), since).as_dict()


@pytest.mark.parametrize("seed", [7, 11])
def test_sql_stats_equal_compute_over_the_rows(trail: Jobtrail, seed: int) -> None:
    load(trail, population(seed))

    expected = reference(trail)
    found = trail.stats().as_dict()

    assert found == expected
    assert found["total"] == 305
    assert set(found["by_queue"]) == {"default", "fast", "bulk"}  # "" counts as default
    assert "rate_limited" not in found["error_codes"]
    assert len(set(found["duration_seconds"].values())) == 3  # three distinct ranks
    counts = list(found["error_codes"].items())
    assert counts == sorted(counts, key=lambda item: (-item[1], item[0]))  # ties by code


def test_sql_stats_equal_compute_over_a_real_history(trail: Jobtrail) -> None:
    mixed_history(trail)

    assert trail.stats().as_dict() == reference(trail)


def test_sql_stats_of_an_empty_table(trail: Jobtrail) -> None:
    found = trail.stats().as_dict()

    assert found == reference(trail)
    assert found["duration_seconds"] == {"p50": None, "p95": None, "p99": None}


@pytest.mark.parametrize("seed", [7, 11])
def test_a_window_counts_the_live_jobs_and_those_finished_in_it(trail: Jobtrail, seed: int) -> None:
    rows = population(seed)
    since = START + timedelta(hours=30)
    at_the_edge = job_row("failed", START, since, error_code="edge")
    just_before = job_row("failed", START, since - timedelta(microseconds=1), error_code="old")
    load(trail, [*rows, at_the_edge, just_before])

    found = trail.stats(since).as_dict()

    assert found == reference(trail, since)
    assert found["finished_since"] == "2024-04-01T05:59:59.999999+00:00"
    in_window = [r for r in rows if r["completed_at"] is None or r["completed_at"] >= since]
    assert found["total"] == len(in_window) + 1 < len(rows)
    assert found["by_status"]["queued"] == 1 and found["by_status"]["processing"] == 2
    assert found["error_codes"]["edge"] == 1 and "old" not in found["error_codes"]
    assert found != trail.stats().as_dict()


def test_a_window_after_every_finish_leaves_the_live_jobs(trail: Jobtrail) -> None:
    load(trail, population())

    found = trail.stats(START + timedelta(days=30)).as_dict()

    assert found["by_status"] == {"processing": 2, "queued": 1}
    assert found["duration_seconds"] == {"p50": None, "p95": None, "p99": None}
    assert found["failure_rate"] is None and found["error_codes"] == {}


@pytest.mark.parametrize("since", [datetime(2024, 4, 1), "2024-04-01T00:00:00Z"])
def test_a_window_must_start_at_an_aware_datetime(trail: Jobtrail, since: Any) -> None:
    with pytest.raises(InvalidField, match="since"):
        trail.stats(since)


@pytest.mark.postgres
def test_the_window_is_read_through_indexes(pg_trail: Jobtrail) -> None:
    """Not the whole table: the finished jobs through ``job_completed_at`` (migration 0014),
    the live ones through an index on status; each query of a windowed `stats`."""
    load(pg_trail, population())
    since = START + timedelta(hours=30)
    queries = [counts_query(since), failed_by_code(since), percentiles_query(since)]
    with pg_trail.engine.connect() as conn:
        conn.execute(text("SET enable_seqscan = off"))  # a tiny table: make the plan show
        plans = ["\n".join(r[0] for r in conn.execute(explain(q))) for q in queries]

    assert "Seq Scan" not in "".join(plans), plans
    assert "job_completed_at" in plans[0] and "job_status_created_at" in plans[0], plans[0]
    assert "job_completed_at" in plans[2], plans[2]  # (failed jobs: either index, by estimate)


def explain(query: Any) -> Any:
    compiled = query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True})
    return text(f"EXPLAIN {compiled}")


@pytest.mark.parametrize("n", [1, 2, 100, 150])
def test_every_percentile_is_the_nearest_rank(trail: Jobtrail, n: int) -> None:
    """Where ``percentile_disc(p / 100)`` would pick one rank too high (p 7 of 100, …)."""
    durations = [float(i // 2 + 1) for i in range(n)]  # ties in pairs
    load(trail, [job_row("completed", START, START + timedelta(seconds=d)) for d in durations])
    every = list(range(101))

    with trail.engine.connect() as conn:
        found = duration_percentiles(conn, percentiles=every)

    assert found == percentiles_of(durations, every)


@pytest.mark.postgres
def test_percentile_disc_with_plain_fractions_is_not_nearest_rank(pg_trail: Jobtrail) -> None:
    """Why the fractions are nudged: PostgreSQL's ceil(0.07 * 100) in float8 is 8."""
    with pg_trail.engine.connect() as conn:
        plain, nudged = conn.execute(
            text(
                "SELECT percentile_disc(0.07) WITHIN GROUP (ORDER BY x),"
                " percentile_disc(:nudged) WITHIN GROUP (ORDER BY x)"
                " FROM generate_series(1, 100) AS x"
            ),
            {"nudged": nearest_rank_fractions([7])[0]},
        ).one()

    assert (plain, nudged) == (8, 7)
    assert percentile([float(x) for x in range(1, 101)], 7) == 7


def test_nearest_rank_fractions_pick_the_nearest_rank_in_float8() -> None:
    """``percentile_disc``'s own arithmetic (PostgreSQL's percentile_disc_final) with them."""
    for p, fraction in zip(range(101), nearest_rank_fractions(range(101)), strict=True):
        for n in range(1, 2001):
            disc = max(1, math.ceil(fraction * n))
            assert disc == max(1, math.ceil(p * n / 100)), (p, n)


def test_the_command_counts_the_last_day_unless_told_otherwise(backend_url: str) -> None:
    """As people run it: a process of its own. Jobs that finished a week ago drop out of the
    default window (24 h); the ones still live, and ``--since all``, keep them."""
    week_ago = datetime.now(UTC) - timedelta(days=7)
    trail = connect(backend_url, clock=SetClock(week_ago))
    try:
        old = trail.submit("render", {"shot": 1})
        trail.service.start(old, "worker-1", 60)
        trail.service.complete(old, 1, {"frames": 24})
        trail.submit("render", {"shot": 2})  # queued a week ago, still live
    finally:
        trail.close()

    default = json.loads(jobtrail_process(backend_url, "stats", "--json").stdout)
    everything = json.loads(
        jobtrail_process(backend_url, "stats", "--since", "all", "--json").stdout
    )
    eight_days = json.loads(
        jobtrail_process(backend_url, "stats", "--since", "8d", "--json").stdout
    )

    assert default["by_status"] == {"queued": 1}
    assert default["finished_since"] is not None
    assert everything["by_status"] == eight_days["by_status"] == {"completed": 1, "queued": 1}
    assert everything["finished_since"] is None
    text = jobtrail_process(backend_url, "stats").stdout
    assert "jobs: live, and finished since " in text


@pytest.mark.parametrize("since", ["yesterday", "", "24 h", "1w"])
def test_a_bad_window_is_one_line(backend_url: str, since: str) -> None:
    result = jobtrail_process(backend_url, "stats", "--since", since)

    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "argument --since" in result.stderr and "is neither" in result.stderr


def test_migration_0014_adds_the_finished_index_and_takes_it_away(trail: Jobtrail) -> None:
    from tests.integration.test_lease_migration import migrate_to

    load(trail, population())
    since = START + timedelta(hours=30)
    expected = trail.stats(since).as_dict()
    migrate_to(trail, "0013")
    assert "job_completed_at" not in index_names(trail)
    assert trail.stats(since).as_dict() == expected  # the same answer, the whole table read
    migrate_to(trail, "head")
    assert "job_completed_at" in index_names(trail)
    assert trail.stats(since).as_dict() == expected


def index_names(trail: Jobtrail) -> set[str]:
    with trail.engine.connect() as conn:
        return {index["name"] for index in inspect(conn).get_indexes("job")}
