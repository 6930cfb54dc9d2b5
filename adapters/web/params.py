"""The dashboard's query parameters, checked before any SQL runs.

Every refusal is a `BadInput` whose message names the parameter and what it accepts, in one
line: the app shows it on a 400 page (never a traceback). Unknown parameters are ignored,
as browsers and proxies add their own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from jobtrail.domain.errors import InvalidJobId
from jobtrail.domain.ids import parse_job_id
from jobtrail.domain.status import JobStatus

MAX_LIMIT = 500
DEFAULT_LIMIT = 50
MAX_TEXT = 200
"""Job types, queues and error codes are at most this long (`jobtrail.domain.limits`)."""
MAX_BUCKETS = 1000
DEFAULT_BUCKETS = 48
DEFAULT_WINDOW = timedelta(hours=24)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(\d{1,9})([smhd]?)")
NICE_BUCKETS = (1, 5, 10, 30, 60, 300, 600, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600)


class BadInput(ValueError):
    """A query parameter or form field the dashboard refuses (a 400 page, one line)."""


@dataclass(frozen=True)
class JobFilter:
    """What the jobs table shows: the filters, the page size and where the page starts."""

    status: str | None = None
    job_type: str | None = None
    queue: str | None = None
    error_code: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = DEFAULT_LIMIT
    before: tuple[datetime, str] | None = None
    """Keyset cursor: the page starts after the job (created_at, id) of the last page."""

    def query(self) -> dict[str, str]:
        """The filters as query parameters (for the next page's link), without the cursor."""
        found = {
            "status": self.status,
            "type": self.job_type,
            "queue": self.queue,
            "code": self.error_code,
            "since": iso(self.since),
            "until": iso(self.until),
        }
        params = {k: v for k, v in found.items() if v}
        if self.limit != DEFAULT_LIMIT:
            params["limit"] = str(self.limit)
        return params


@dataclass(frozen=True)
class Window:
    """A chart's time window, cut in ``count`` buckets of ``width`` seconds from ``since``."""

    since: datetime
    until: datetime
    width: int

    @property
    def count(self) -> int:
        return math.ceil((self.until - self.since).total_seconds() / self.width)

    def start(self, bucket: int) -> datetime:
        return self.since + timedelta(seconds=bucket * self.width)


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _text(params: Mapping[str, str], name: str) -> str | None:
    value = params.get(name, "").strip()
    if not value:
        return None
    if len(value) > MAX_TEXT or not value.isprintable():
        raise BadInput(f"{name}: must be 1 to {MAX_TEXT} printable characters")
    return value


def parse_time(params: Mapping[str, str], name: str) -> datetime | None:
    """An ISO 8601 time (no zone: UTC), or None when absent."""
    text = params.get(name, "").strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise BadInput(
            f"{name}: {text[:60]!r} is not an ISO 8601 time (like 2026-11-29T13:41:09Z)"
        ) from None


def parse_limit(params: Mapping[str, str]) -> int:
    text = params.get("limit", "").strip()
    if not text:
        return DEFAULT_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise BadInput(f"limit: must be a whole number from 1 to {MAX_LIMIT}, not {text[:20]!r}")
    return int(text)


def parse_status(params: Mapping[str, str]) -> str | None:
    text = params.get("status", "").strip()
    if not text:
        return None
    if text not in {s.value for s in JobStatus}:
        known = ", ".join(s.value for s in JobStatus)
        raise BadInput(f"status: {text[:40]!r} is not one of {known}")
    return text


def job_id(text: str) -> str:
    """A job id from the path, in its canonical form."""
    try:
        return parse_job_id(text)
    except InvalidJobId:
        raise BadInput(f"job id: {text[:60]!r} is not a job id (a UUID)") from None


def job_filter(params: Mapping[str, str]) -> JobFilter:
    since, until = parse_time(params, "since"), parse_time(params, "until")
    if since is not None and until is not None and until <= since:
        raise BadInput("until: must be later than since")
    before = None
    if params.get("before") or params.get("before_id"):
        moment = parse_time(params, "before")
        if moment is None:
            raise BadInput("before: a page cursor needs both before and before_id")
        before = (moment, job_id(params.get("before_id", "")))
    return JobFilter(
        status=parse_status(params),
        job_type=_text(params, "type"),
        queue=_text(params, "queue"),
        error_code=_text(params, "code"),
        since=since,
        until=until,
        limit=parse_limit(params),
        before=before,
    )


def parse_bucket(text: str) -> int:
    """Seconds: ``300``, ``90s``, ``5m``, ``1h``, ``1d``."""
    found = _DURATION.fullmatch(text.strip())
    seconds = int(found[1]) * _UNITS[found[2] or "s"] if found else 0
    if seconds < 1:
        raise BadInput(f"bucket: {text[:20]!r} is not a duration like 300, 90s, 5m, 1h or 1d")
    return seconds


def window(params: Mapping[str, str], now: datetime) -> Window:
    """The chart window: ``since``..``until`` (default the last 24 hours) and ``bucket``."""
    until, since = parse_time(params, "until"), parse_time(params, "since")
    if until is None and since is None:  # the last 24 hours, in whole buckets
        step = _nice_width(DEFAULT_WINDOW.total_seconds())
        until = datetime.fromtimestamp(math.ceil(now.timestamp() / step) * step, UTC)
    until = until or now
    since = since or until - DEFAULT_WINDOW
    if until <= since:
        raise BadInput("until: must be later than since")
    span = (until - since).total_seconds()
    text = params.get("bucket", "").strip()
    width = parse_bucket(text) if text else _nice_width(span)
    if span / width > MAX_BUCKETS:
        raise BadInput(
            f"bucket: {width} s cuts the window in more than {MAX_BUCKETS} buckets; "
            "choose a longer bucket or a shorter window"
        )
    return Window(since, until, width)


def _nice_width(span: float) -> int:
    """About `DEFAULT_BUCKETS` buckets, each a round number of seconds."""
    wanted = span / DEFAULT_BUCKETS
    for width in NICE_BUCKETS:
        if width >= wanted:
            return width
    return max(86400, math.ceil(wanted / 86400) * 86400)
