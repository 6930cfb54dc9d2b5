"""Retention cuts read as an ISO 8601 time or as an age before now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from jobtrail.domain.moments import moment_or_age

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", NOW - timedelta(days=30)),
        ("12h", NOW - timedelta(hours=12)),
        (" 90m ", NOW - timedelta(minutes=90)),
        ("0s", NOW),
        ("2026-01-01", datetime(2026, 1, 1, tzinfo=UTC)),
        ("2026-01-01T02:00:00+02:00", datetime(2026, 1, 1, tzinfo=UTC)),
    ],
)
def test_a_time_or_an_age_is_a_utc_moment(text: str, expected: datetime) -> None:
    found = moment_or_age(text, NOW.astimezone(timezone(timedelta(hours=5))))
    assert found == expected and found.tzinfo == UTC


@pytest.mark.parametrize("text", ["", "30", "30 days", "-3d", "3w", "1.5h", "yesterday"])
def test_anything_else_names_both_forms(text: str) -> None:
    with pytest.raises(ValueError, match="is neither an ISO 8601 time .* nor an age"):
        moment_or_age(text, NOW)


def test_a_time_outside_the_years_python_holds_in_utc_is_refused() -> None:
    with pytest.raises(ValueError, match="outside the years 1 to 9999"):
        moment_or_age("0001-01-01T00:00+01:00", NOW)
