"""What a replay found, in a form that is the same for the same log (no clocks, no timings).

Problems are counted by kind and listed up to a limit; a replay split into parts (worker
processes) merges the parts' reports in log order into the report of one pass.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jobtrail.adapters.audit.checks.history import JobResult
from jobtrail.adapters.audit.checks.records import Problem
from jobtrail.domain.canonical import utc_iso


def show(value: Any) -> Any:
    """A column value as it appears in a JSON report."""
    return utc_iso(value) if isinstance(value, datetime) else value


@dataclass
class Report:
    """Counts and problems of a replay; the same log gives the same report."""

    source: str
    scope: dict[str, Any]
    max_problems: int = 10_000
    events: int = 0
    jobs: int = 0
    duplicates: int = 0
    rows_compared: int = 0
    rows_pruned: int = 0
    """Missing rows of jobs finished before a recorded prune's cut: removed on purpose."""
    pruned_before: datetime | None = None
    notes: list[str] = field(default_factory=list)
    seals: dict[str, Any] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    hash_forms: Counter[str] = field(default_factory=Counter)
    """Events by the rule their hash was checked by (see `JobResult.hash_forms`)."""

    def add(self, problems: Iterable[Problem]) -> None:
        for problem in problems:
            self.counts[problem.kind] += 1
            if len(self.problems) < self.max_problems:
                self.problems.append(problem)

    def add_job(self, result: JobResult) -> None:
        self.jobs += 1
        self.events += result.events
        self.duplicates += result.duplicates
        self.hash_forms.update(result.hash_forms)
        self.add(result.problems)

    def merge(self, part: Report) -> None:
        """Add the report of a part of the log that follows everything added so far.

        Each part lists its first problems and counts all of them, so parts merged in log
        order give the report one pass over the whole log would.
        """
        self.events += part.events
        self.jobs += part.jobs
        self.duplicates += part.duplicates
        self.rows_compared += part.rows_compared
        self.rows_pruned += part.rows_pruned
        self.pruned_before = part.pruned_before or self.pruned_before
        self.notes.extend(part.notes)
        self.seals = part.seals or self.seals
        self.counts.update(part.counts)
        self.hash_forms.update(part.hash_forms)
        room = max(self.max_problems - len(self.problems), 0)
        self.problems.extend(part.problems[:room])

    @property
    def problem_count(self) -> int:
        return sum(self.counts.values())

    @property
    def clean(self) -> bool:
        return self.problem_count == 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "scope": self.scope,
            "clean": self.clean,
            "events": self.events,
            "jobs": self.jobs,
            "duplicates_skipped": self.duplicates,
            "rows_compared": self.rows_compared,
            "rows_pruned": self.rows_pruned,
            "hashes": {
                "jcs": self.hash_forms["jcs"],
                "legacy": self.hash_forms["legacy"],
                "legacy_restored": self.hash_forms["legacy_restored"],
            },
            "seals": self.seals,
            "notes": self.notes,
            "problem_count": self.problem_count,
            "problems_by_kind": dict(sorted(self.counts.items())),
            "problems_listed": len(self.problems),
            "problems": [p.as_dict() for p in self.problems],
        }
