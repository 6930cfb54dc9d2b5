"""Statistics over the `job` table: what operators look at first.

With a window (``since``), the jobs live now (queued, processing) and those that finished at
or after ``since``: counts, failure rate, error codes and durations then describe recent
work, at a cost that does not grow with the table. Without one, every row.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from jobtrail.domain.canonical import utc_iso
from jobtrail.domain.status import JobStatus

PERCENTILES = (50, 95, 99)


@dataclass
class JobStats:
    total: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_type: dict[str, Counter[str]] = field(default_factory=dict)
    by_queue: dict[str, Counter[str]] = field(default_factory=dict)
    error_codes: Counter[str] = field(default_factory=Counter)
    durations: list[float] = field(default_factory=list)
    percentiles: dict[str, float | None] | None = None
    """The duration percentiles when the database computed them; else from `durations`."""
    since: datetime | None = None
    """Finished jobs counted: those finished at or after this (None: all of them)."""

    @property
    def failure_rate(self) -> float | None:
        """Failed jobs among those that finished (completed, failed or cancelled)."""
        finished = sum(self.by_status[s.value] for s in JobStatus if s.is_terminal)
        return self.by_status[JobStatus.FAILED.value] / finished if finished else None

    def duration_percentiles(self) -> dict[str, float | None]:
        """Seconds from creation to a terminal state, at the 50th, 95th and 99th percentile."""
        if self.percentiles is not None:
            return dict(self.percentiles)
        return percentiles_of(self.durations)

    def as_dict(self) -> dict[str, Any]:
        return {
            "finished_since": None if self.since is None else utc_iso(self.since),
            "total": self.total,
            "by_status": dict(sorted(self.by_status.items())),
            "by_type": {t: dict(sorted(c.items())) for t, c in sorted(self.by_type.items())},
            "by_queue": {q: dict(sorted(c.items())) for q, c in sorted(self.by_queue.items())},
            "failure_rate": self.failure_rate,
            "error_codes": dict(self.error_codes.most_common()),
            "duration_seconds": self.duration_percentiles(),
        }


def percentiles_of(
    durations: Iterable[float], percentiles: Sequence[float] = PERCENTILES
) -> dict[str, float | None]:
    """``{"p50": …}``: the nearest-rank `percentile` of each of ``percentiles``."""
    ordered = sorted(durations)
    return {f"p{p}": percentile(ordered, p) for p in percentiles}


def percentile(ordered: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p * len(ordered) / 100))
    return ordered[rank - 1]


def compute(rows: Iterable[Mapping[str, Any]], since: datetime | None = None) -> JobStats:
    """Stats from rows with status, job_type, queue, error_code, created_at and completed_at;
    with ``since``, of the live rows and those finished at or after it."""
    stats = JobStats(since=since)
    for row in rows:
        if since is not None and row["completed_at"] is not None and row["completed_at"] < since:
            continue
        stats.total += 1
        status = row["status"]
        stats.by_status[status] += 1
        stats.by_type.setdefault(row["job_type"], Counter())[status] += 1
        stats.by_queue.setdefault(row.get("queue") or "default", Counter())[status] += 1
        if status == JobStatus.FAILED.value and row["error_code"]:
            stats.error_codes[row["error_code"]] += 1
        if row["completed_at"] is not None:
            stats.durations.append(duration(row["created_at"], row["completed_at"]))
    return stats


def duration(created_at: datetime, completed_at: datetime) -> float:
    """Seconds from creation to completion, to the microsecond both backends store."""
    return (completed_at - created_at).total_seconds()


def from_groups(
    counts: Iterable[tuple[str, str | None, str, int]],
    failed_codes: Iterable[tuple[str | None, int]],
    percentiles: Mapping[str, float | None],
    since: datetime | None = None,
) -> JobStats:
    """`compute`'s result from what the database grouped, so `job` never crosses the wire.

    ``counts``: jobs by (job_type, queue, status); ``failed_codes``: failed jobs by error
    code (in the order ties should list in); ``percentiles``: the durations' `PERCENTILES`.
    """
    stats = JobStats(percentiles=dict(percentiles), since=since)
    for job_type, queue, status, n in counts:
        stats.total += n
        stats.by_status[status] += n
        stats.by_type.setdefault(job_type, Counter())[status] += n
        stats.by_queue.setdefault(queue or "default", Counter())[status] += n
    for code, n in failed_codes:
        if code:  # as `compute`: no code, or an empty one, is not counted
            stats.error_codes[code] += n
    return stats


def nearest_rank_fractions(percentiles: Sequence[float] = PERCENTILES) -> list[float]:
    """Fractions for SQL's ``percentile_disc`` that pick the element `percentile` picks.

    ``percentile_disc(f)`` takes element ``ceil(f * n)`` in double precision. ``p / 100`` as
    a double can lie just above p/100 (0.07: over 1..100 PostgreSQL picks 8, nearest rank
    7) and move the pick one up whenever p*n/100 is whole. One step below it, the product
    stays under the true p*n/100 by far less than the 1/100 separating a fractional p*n/100
    from the next whole number (for any n under about 10^13), so ceil lands on the same rank.
    """
    return [max(0.0, math.nextafter(p / 100, 0.0)) for p in percentiles]


def named_percentiles(
    values: Sequence[timedelta | None] | None, percentiles: Sequence[float] = PERCENTILES
) -> dict[str, float | None]:
    """``{"p50": seconds, …}`` from ``percentile_disc``'s array (None: no finished job)."""
    found = values if values is not None else [None] * len(percentiles)
    return {
        f"p{p}": None if v is None else v.total_seconds()
        for p, v in zip(percentiles, found, strict=True)
    }
