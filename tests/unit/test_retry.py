"""RetryPolicy: capped exponential backoff with jitter; an error's retry_after wins."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jobtrail.domain.errors import (
    InsufficientCredits,
    InvalidInput,
    JobError,
    LeaseExpired,
    RateLimited,
    UnexpectedError,
    UnknownJobType,
    UpstreamTimeout,
    UpstreamUnavailable,
    WorkerShutdown,
)
from jobtrail.domain.retry import RetryPolicy


def ceiling(policy: RetryPolicy, attempt: int) -> float:
    return min(policy.max_delay, policy.base_delay * policy.factor ** (attempt - 1))


@given(
    attempt=st.integers(min_value=1, max_value=6),
    base=st.floats(min_value=0.001, max_value=100, allow_nan=False),
    factor=st.floats(min_value=1.0, max_value=10.0, allow_nan=False),
    max_delay=st.floats(min_value=0.001, max_value=10_000, allow_nan=False),
    seed=st.integers(min_value=0, max_value=2**32 - 1),
)
def test_delay_lies_between_half_the_ceiling_and_the_ceiling(
    attempt: int, base: float, factor: float, max_delay: float, seed: int
) -> None:
    policy = RetryPolicy(
        base_delay=base, factor=factor, max_delay=max_delay, rng=random.Random(seed)
    )
    c = ceiling(policy, attempt)
    delay = policy.delay(UpstreamTimeout(), attempt)
    assert c / 2 <= delay <= c
    assert delay <= max_delay


@pytest.mark.parametrize(
    ("attempt", "low", "high"),
    [(1, 0.5, 1), (2, 1, 2), (3, 2, 4), (4, 4, 8), (5, 8, 16), (6, 16, 32)],
)
def test_default_backoff_doubles(attempt: int, low: float, high: float) -> None:
    policy = RetryPolicy(rng=random.Random(attempt))
    delays = [policy.delay(UpstreamTimeout(), attempt) for _ in range(200)]
    assert all(low <= d <= high for d in delays)
    # jitter: the delays are spread, not all the same
    assert max(delays) - min(delays) > (high - low) / 2


def test_cap_is_respected() -> None:
    policy = RetryPolicy(base_delay=10, factor=10, max_delay=60, rng=random.Random(1))
    for attempt in range(3, 30):
        delay = policy.delay(UpstreamUnavailable(), attempt)
        assert 30 <= delay <= 60


def test_cap_holds_for_very_large_attempts() -> None:
    policy = RetryPolicy(rng=random.Random(1))
    assert 150 <= policy.delay(UpstreamTimeout(), 2000) <= 300


@pytest.mark.parametrize("attempt", [1, 3, 10])
def test_retry_after_wins(attempt: int) -> None:
    policy = RetryPolicy(max_delay=300, rng=random.Random(0))
    assert policy.delay(RateLimited(retry_after=7.5), attempt) == 7.5
    # even beyond the cap: the upstream said how long to wait
    assert policy.delay(RateLimited(retry_after=1000), attempt) == 1000.0


def test_retry_after_zero_is_honoured_and_negative_is_clamped() -> None:
    policy = RetryPolicy(base_delay=50, rng=random.Random(0))
    assert policy.delay(RateLimited(retry_after=0), 1) == 0.0
    assert policy.delay(RateLimited(retry_after=-5), 1) == 0.0


@pytest.mark.parametrize(
    "error",
    [InsufficientCredits(), InvalidInput(), UnknownJobType(), UnexpectedError(ValueError("x"))],
    ids=lambda e: type(e).__name__,
)
def test_non_retryable_errors_are_never_retried(error: JobError) -> None:
    policy = RetryPolicy()
    assert not policy.should_retry(error, 1, 10)


@pytest.mark.parametrize(
    "error",
    [UpstreamTimeout(), UpstreamUnavailable(), RateLimited(), LeaseExpired(), WorkerShutdown()],
    ids=lambda e: type(e).__name__,
)
def test_retryable_errors_are_retried_while_attempts_are_left(error: JobError) -> None:
    policy = RetryPolicy()
    assert policy.should_retry(error, 1, 3)
    assert policy.should_retry(error, 2, 3)
    assert not policy.should_retry(error, 3, 3)
    assert not policy.should_retry(error, 4, 3)
    assert not policy.should_retry(error, 1, 1)


def test_seeded_rng_makes_delays_reproducible() -> None:
    def delays(seed: int) -> list[float]:
        policy = RetryPolicy(rng=random.Random(seed))
        return [policy.delay(UpstreamTimeout(), attempt) for attempt in range(1, 7)]

    assert delays(42) == delays(42)
    assert delays(42) != delays(43)


def test_rng_is_not_part_of_equality() -> None:
    assert RetryPolicy(rng=random.Random(1)) == RetryPolicy(rng=random.Random(2))
    assert RetryPolicy(base_delay=2) != RetryPolicy(base_delay=3)
