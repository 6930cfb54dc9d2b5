"""Statistics over the `job` table: what operators look at first."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

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

    @property
    def failure_rate(self) -> float | None:
        """Failed jobs among those that finished (completed, failed or cancelled)."""
        finished = sum(self.by_status[s.value] for s in JobStatus if s.is_terminal)
        return self.by_status[JobStatus.FAILED.value] / finished if finished else None

    def duration_percentiles(self) -> dict[str, float | None]:
        """Seconds from creation to a terminal state, at the 50th, 95th and 99th percentile."""
        ordered = sorted(self.durations)
        return {f"p{p}": percentile(ordered, p) for p in PERCENTILES}

    def as_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_status": dict(sorted(self.by_status.items())),
            "by_type": {t: dict(sorted(c.items())) for t, c in sorted(self.by_type.items())},
            "by_queue": {q: dict(sorted(c.items())) for q, c in sorted(self.by_queue.items())},
            "failure_rate": self.failure_rate,
            "error_codes": dict(self.error_codes.most_common()),
            "duration_seconds": self.duration_percentiles(),
        }


def percentile(ordered: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p * len(ordered) / 100))
    return ordered[rank - 1]


def compute(rows: Iterable[Mapping[str, Any]]) -> JobStats:
    """Stats from rows with status, job_type, queue, error_code, created_at and completed_at."""
    stats = JobStats()
    for row in rows:
        stats.total += 1
        status = row["status"]
        stats.by_status[status] += 1
        stats.by_type.setdefault(row["job_type"], Counter())[status] += 1
        stats.by_queue.setdefault(row.get("queue") or "default", Counter())[status] += 1
        if status == JobStatus.FAILED.value and row["error_code"]:
            stats.error_codes[row["error_code"]] += 1
        if row["completed_at"] is not None:
            stats.durations.append((row["completed_at"] - row["created_at"]).total_seconds())
    return stats
