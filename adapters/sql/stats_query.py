"""`jobtrail stats` computed in the database: a few grouped rows cross the wire, not `job`.

Counts come from one ``GROUP BY job_type, queue, status``, error codes from one over the
failed jobs. The duration percentiles: PostgreSQL's ``percentile_disc`` over the intervals
(exact to the microsecond, like the rows' timestamps), with fractions nudged to pick the
nearest rank (`nearest_rank_fractions`); SQLite has no percentile function, and its
``julianday`` keeps milliseconds only, so it sends the two timestamps of finished jobs and
Python subtracts them as `compute` does. The reads share one snapshot (PostgreSQL:
REPEATABLE READ; SQLite: one read transaction), as the single scan they replace did.
`jobtrail.projections.stats.compute` over every row stays the reference they are tested
against (tests/integration/test_stats_sql.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from jobtrail.adapters.sql.engine import is_postgres
from jobtrail.adapters.sql.errors import translated_errors
from jobtrail.adapters.sql.schema import job
from jobtrail.domain.status import JobStatus
from jobtrail.projections.stats import (
    PERCENTILES,
    JobStats,
    duration,
    from_groups,
    named_percentiles,
    nearest_rank_fractions,
    percentiles_of,
)
from sqlalchemy import ARRAY, Connection, Engine, Float, Select, func, literal, select

_FINISHED = job.c.completed_at.is_not(None)

BY_TYPE_QUEUE_STATUS = select(job.c.job_type, job.c.queue, job.c.status, func.count()).group_by(
    job.c.job_type, job.c.queue, job.c.status
)
FAILED_BY_CODE = (
    select(job.c.error_code, func.count())
    .where(job.c.status == JobStatus.FAILED.value)
    .group_by(job.c.error_code)
    .order_by(job.c.error_code)  # ties in `error_codes` list alphabetically
)
FINISHED_TIMES = select(job.c.created_at, job.c.completed_at).where(_FINISHED)


def percentiles_query(percentiles: Sequence[float] = PERCENTILES) -> Select[list[timedelta] | None]:
    """PostgreSQL: the nearest-rank percentiles of creation-to-completion intervals."""
    fractions = literal(nearest_rank_fractions(percentiles), ARRAY(Float))
    by_duration = func.percentile_disc(fractions).within_group(
        job.c.completed_at - job.c.created_at
    )
    return select(by_duration).where(_FINISHED)


def duration_percentiles(
    conn: Connection, percentiles: Sequence[float] = PERCENTILES
) -> dict[str, float | None]:
    """``{"p50": seconds, …}`` over finished jobs, as `percentile` picks them."""
    if is_postgres(conn):
        values = conn.execute(percentiles_query(percentiles)).scalar_one()
        return named_percentiles(values, percentiles)
    return percentiles_of((duration(*times) for times in conn.execute(FINISHED_TIMES)), percentiles)


def read_stats(engine: Engine) -> JobStats:
    """`compute`'s `JobStats` without reading every row of `job`."""
    snapshot = {"isolation_level": "REPEATABLE READ"} if is_postgres(engine) else {}
    with translated_errors(), engine.connect().execution_options(**snapshot) as conn:
        counts = [(t, q, s, n) for t, q, s, n in conn.execute(BY_TYPE_QUEUE_STATUS)]
        codes = [(code, n) for code, n in conn.execute(FAILED_BY_CODE)]
        return from_groups(counts, codes, duration_percentiles(conn))
