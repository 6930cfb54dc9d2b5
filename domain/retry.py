"""When a failed attempt is tried again, and after how long."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from jobtrail.domain.errors import JobError


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped; an error's own ``retry_after`` wins.

    The delay before attempt ``n + 1`` is drawn uniformly from
    ``[base * factor**(n-1) / 2, base * factor**(n-1)]`` (capped at ``max_delay``), so
    retries of many jobs failing together spread out instead of stampeding. When the
    error says how long to wait (a rate limit's retry-after), that is the delay.
    """

    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 300.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def should_retry(self, error: JobError, attempt: int, max_attempts: int) -> bool:
        return error.retryable and attempt < max_attempts

    def delay(self, error: JobError, attempt: int) -> float:
        """Seconds to wait before the attempt after ``attempt`` (which starts at 1)."""
        if error.retry_after is not None:
            return max(0.0, float(error.retry_after))
        try:
            backoff = self.base_delay * self.factor ** max(attempt - 1, 0)
        except OverflowError:  # a very late attempt: the cap applies
            backoff = self.max_delay
        ceiling = min(self.max_delay, backoff)
        return self.rng.uniform(ceiling / 2, ceiling)
