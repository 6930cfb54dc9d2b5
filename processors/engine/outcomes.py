"""What passes between a worker's main loop and its processor threads.

The main loop hands a `Running` job to a thread; the thread hands back a `Finished` (a result
or a failure) after any `Progressed` reports, all on one queue, in the order they were made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jobtrail.domain.errors import JobError
from jobtrail.domain.job import Job
from jobtrail.processors.base import JobContext


@dataclass
class Running:
    job: Job
    ctx: JobContext
    started: float
    settled: bool = field(default=False, compare=False, repr=False)
    """Its `Finished` was put on the done queue: the runner puts one per attempt, whoever
    ends it first (the processor, a hand-back, a dead thread or event loop)."""


@dataclass(frozen=True)
class Finished:
    job_id: str
    attempt: int
    elapsed: float
    result: Any = None
    error: JobError | None = None
    raised_at: float = 0.0


@dataclass(frozen=True)
class Progressed:
    job_id: str
    attempt: int
    percent: int
    message: str | None


Reported = Finished | Progressed
