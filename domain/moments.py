"""A moment given as an ISO 8601 time or as an age before now (``30d``, ``12h``).

Retention cuts are usually "older than 30 days": the age form lets a crontab line, a
schedule's payload or a command line say so without computing a date.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from jobtrail.domain.errors import InvalidField

AGE = re.compile(r"(\d{1,6})([smhd])")
"""An age: a whole number of seconds, minutes, hours or days."""
AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
ISO_FORM = "an ISO 8601 time (like 2026-11-29T13:41:09Z)"
AGE_FORM = "an age (like 30d, 12h, 90m)"


def moment_or_age(text: str, now: datetime) -> datetime:
    """The moment ``text`` names, in UTC; `ValueError` naming both forms otherwise.

    An age counts back from ``now``; a time without a zone is UTC.
    """
    if found := AGE.fullmatch(text.strip()):
        return now.astimezone(UTC) - timedelta(**{AGE_UNITS[found[2]]: int(found[1])})
    try:
        moment = datetime.fromisoformat(text)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except ValueError:
        raise ValueError(f"is neither {ISO_FORM} nor {AGE_FORM}") from None
    except OverflowError:
        raise ValueError("is outside the years 1 to 9999") from None


def check_time(value: object, field: str) -> None:
    """A moment a caller passes in: a timezone-aware datetime, else `InvalidField`."""
    if not isinstance(value, datetime):
        raise InvalidField(field=field, reason=f"must be a datetime, not {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidField(field=field, reason="must be timezone-aware (UTC, or with an offset)")
