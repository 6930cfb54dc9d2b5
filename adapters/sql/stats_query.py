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

With a window (``since``), the finished jobs counted are those finished at or after it,
found through the ``job_completed_at`` index (migration 0014), and the live ones (queued,
processing) through ``job_status_created_at``: the cost follows the jobs live now and
finished in the window, not the size of `job`. Without one, every row is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from jobtrail.adapters.sql.engine import is_postgres
from jobtrail.adapters.sql.errors import translated_errors
from jobtrail.adapters.sql.schema import job
from jobtrail.domain.status import TERMINAL_STATUSES, JobStatus
from jobtrail.projections.stats import (
    PERCENTILES,
    JobStats,
    duration,
    from_groups,
    named_percentiles,
    nearest_rank_fractions,
    percentiles_of,
)
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    Engine,
    Float,
    Select,
    func,
    literal,
    select,
    true,
    union_all,
)

LIVE = sorted(s.value for s in JobStatus if s not in TERMINAL_STATUSES)


def finished(since: datetime | None) -> ColumnElement[bool]:
    """Jobs that finished, at or after ``since`` when given."""
    if since is None:
        return job.c.completed_at.is_not(None)
    return job.c.completed_at >= since


def _by_type_queue_status(where: ColumnElement[bool]) -> Select[Any]:
    columns = (job.c.job_type, job.c.queue, job.c.status)
    return select(*columns, func.count()).where(where).group_by(*columns)


def counts_query(since: datetime | None) -> Select[Any]:
    """Jobs by type, queue and status: every row, or the live ones and those finished in
    the window (two index range scans)."""
    if since is None:
        return _by_type_queue_status(true())
    live = _by_type_queue_status(job.c.status.in_(LIVE))
    return select(union_all(live, _by_type_queue_status(finished(since))).subquery())


def failed_by_code(since: datetime | None) -> Select[Any]:
    failed = job.c.status == JobStatus.FAILED.value
    if since is not None:
        failed = failed & finished(since)
    return (
        select(job.c.error_code, func.count())
        .where(failed)
        .group_by(job.c.error_code)
        .order_by(job.c.error_code)  # ties in `error_codes` list alphabetically
    )


def percentiles_query(
    since: datetime | None = None, percentiles: Sequence[float] = PERCENTILES
) -> Select[Any]:
    """PostgreSQL: the nearest-rank percentiles of creation-to-completion intervals."""
    fractions = literal(nearest_rank_fractions(percentiles), ARRAY(Float))
    by_duration = func.percentile_disc(fractions).within_group(
        job.c.completed_at - job.c.created_at
    )
    return select(by_duration).where(finished(since))


def duration_percentiles(
    conn: Connection, since: datetime | None = None, percentiles: Sequence[float] = PERCENTILES
) -> dict[str, float | None]:
    """``{"p50": seconds, …}`` over finished jobs, as `percentile` picks them."""
    if is_postgres(conn):
        values = conn.execute(percentiles_query(since, percentiles)).scalar_one()
        return named_percentiles(values, percentiles)
    times = select(job.c.created_at, job.c.completed_at).where(finished(since))
    return percentiles_of((duration(*pair) for pair in conn.execute(times)), percentiles)


def read_stats(engine: Engine, since: datetime | None = None) -> JobStats:
    """`compute`'s `JobStats` without reading every row of `job`; with ``since``, of the
    live jobs and those finished at or after it."""
    snapshot = {"isolation_level": "REPEATABLE READ"} if is_postgres(engine) else {}
    with translated_errors(), engine.connect().execution_options(**snapshot) as conn:
        counts = [(t, q, s, n) for t, q, s, n in conn.execute(counts_query(since))]
        codes = [(code, n) for code, n in conn.execute(failed_by_code(since))]
        return from_groups(counts, codes, duration_percentiles(conn, since), since)
