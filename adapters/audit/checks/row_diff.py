"""The rebuilt `job` table against the live one: rows that differ, are missing, or are extra.

Both sides arrive in job id order, so the comparison is a merge join and holds one row of
each side at a time. A live row without events means its history was deleted. A missing
live row of a job that finished before the cut of a recorded prune (`jobtrail prune`) was
removed on purpose: it is counted (`PrunedRows`), not reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from jobtrail.adapters.audit.checks.records import Problem
from jobtrail.domain.status import TERMINAL_STATUSES
from jobtrail.projections.job_table import COLUMNS

FINISHED = frozenset(status.value for status in TERMINAL_STATUSES)


class LiveRow(NamedTuple):
    """A row of the live `job` table, by its id."""

    job_id: str
    row: dict[str, Any]


@dataclass
class PrunedRows:
    """Rows a prune removed on purpose: of jobs finished before its cut ``before``."""

    before: datetime
    count: int = 0

    def explain(self, row: dict[str, Any]) -> bool:
        """Whether a missing row is one of them (counted if it is)."""
        finished = row.get("completed_at")
        pruned = row.get("status") in FINISHED and finished is not None and finished < self.before
        self.count += pruned
        return pruned


def diff_rows(
    shadow: Iterable[tuple[str, dict[str, Any] | None]],
    live: Iterable[LiveRow],
    show: Callable[[Any], Any],
    pruned: PrunedRows | None = None,
) -> Iterator[Problem]:
    """Compare rebuilt rows with the live table, both in job id order (a merge join).

    ``show`` turns a column value into its JSON form for the report; ``pruned`` counts the
    missing rows a recorded prune explains.
    """
    live_iter = iter(live)
    pending = next(live_iter, None)
    last = ""
    for job_id, row in shadow:
        if job_id < last:
            raise ValueError("job ids are not in byte order; the database needs C collation")
        last = job_id
        while pending is not None and pending.job_id < job_id:
            yield _extra(pending)
            pending = next(live_iter, None)
        if pending is not None and pending.job_id == job_id:
            if row is not None:
                yield from _row_differences(job_id, row, pending.row, show)
            pending = next(live_iter, None)
        elif row is not None and not (pruned is not None and pruned.explain(row)):
            yield _missing(job_id, row)
    while pending is not None:
        yield _extra(pending)
        pending = next(live_iter, None)


def _missing(job_id: str, row: dict[str, Any]) -> Problem:
    return Problem(
        "row_missing",
        f"the live job table has no row for job {job_id}, which the log has "
        f"(up to version {row['version']})",
        job_id,
        row["version"],
    )


def _extra(live: LiveRow) -> Problem:
    version = live.row.get("version")
    return Problem(
        "row_without_events",
        f"the live job table has job {live.job_id} (version {version}) but the log has no "
        "events for it: its history was deleted",
        live.job_id,
        version,
    )


def _row_differences(
    job_id: str, rebuilt: dict[str, Any], live: dict[str, Any], show: Callable[[Any], Any]
) -> Iterator[Problem]:
    columns = [c for c in COLUMNS if rebuilt.get(c) != live.get(c)]
    if columns:
        yield Problem(
            "row_differs",
            f"the live row of job {job_id} differs from the rebuilt one in " + ", ".join(columns),
            job_id,
            live.get("version"),
            details={c: {"live": show(live.get(c)), "log": show(rebuilt.get(c))} for c in columns},
        )
