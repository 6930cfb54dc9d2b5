"""When a schedule's ticks fall: cron expressions and time zones, through cronsim.

cronsim (Healthchecks.io's cron evaluator) is the one place that reads an expression; this
module checks what it is given, turns its local times into UTC instants, and picks the ticks
a scheduler enqueues under a catch-up policy. Everything here is a pure function of the
expression, the zone and the instants given: no clock, no database.

Expressions have the five classic fields (minute hour day-of-month month day-of-week),
Debian cron's syntax plus cronsim's ``L``, ``LW``, ``MON#2`` and ``5L``, and the nicknames
``@hourly``, ``@daily`` (``@midnight``), ``@weekly``, ``@monthly``, ``@yearly``
(``@annually``). A sixth (seconds) field is refused: a tick is at least a minute apart from
the next, which the scheduler's one-second round and the 60-second ``none`` grace rely on.

Daylight saving time follows Debian cron (cronsim's own rule), in the schedule's zone: an
expression with a fixed minute *and* hour (``30 2 * * *``) runs once a local day: a time the
clocks skip runs at the first minute after the gap (02:30 → 03:00 on Europe/Berlin's
spring-forward day), a time that happens twice runs at its first occurrence only. An
expression with ``*`` in the minute or hour field (``*/5 * * * *``, ``0 * * * *``) follows
real time: nothing falls into the skipped hour, and the repeated hour runs twice.
"""

from __future__ import annotations

import logging
import zoneinfo
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from cronsim import CronSim, CronSimError
from jobtrail.domain import limits
from jobtrail.domain.errors import InvalidField, InvalidSchedule

log = logging.getLogger(__name__)

CRON = limits.Text(200, printable=True)
"""``job_schedule.cron`` VARCHAR(200)."""
TIMEZONE = limits.Text(64, printable=True)
"""``job_schedule.timezone`` VARCHAR(64)."""
FIELDS = "minute hour day-of-month month day-of-week"
NICKNAMES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MACHINE_ZONES = frozenset({"localtime"})
"""Zone keys that name whatever the machine is set to: a schedule would tick differently on
each worker, so they are refused."""

MAX_CATCH_UP = 1000
"""``all`` enqueues at most this many missed ticks (the latest ones) after a downtime."""
ON_TIME = timedelta(seconds=60)
"""``none``: a tick first seen within this long after its time is on time, not missed."""
FIRST_WINDOW = timedelta(hours=1)


class CatchUp(StrEnum):
    """What a scheduler that was down does with the ticks it missed."""

    LATEST = "latest"
    """Enqueue only the most recent due tick (the default)."""
    ALL = "all"
    """Enqueue every missed tick, the latest `MAX_CATCH_UP` of them."""
    NONE = "none"
    """Skip missed ticks: enqueue a tick only when it is seen on time (`ON_TIME`)."""

    @classmethod
    def parse(cls, value: object) -> CatchUp:
        if isinstance(value, str) and value in cls._value2member_map_:
            return cls(value)
        choices = ", ".join(member.value for member in cls)
        raise InvalidSchedule(
            field="catch_up", reason=f"must be one of {choices}, not {limits.shown(value)}"
        )


@dataclass(frozen=True)
class Due:
    """What a scheduler does with a schedule now."""

    ticks: list[datetime]
    """The ticks to enqueue (UTC, oldest first); may be empty when the policy skipped them."""
    latest: datetime | None
    """The latest due tick, enqueued or skipped: the schedule's new ``last_tick_at``. None:
    nothing is due."""
    skipped: bool
    """Some due ticks were left out by the catch-up policy (or its cap)."""


@dataclass(frozen=True)
class Cron:
    """A checked expression in a time zone."""

    expression: str
    zone: zoneinfo.ZoneInfo

    @classmethod
    def parse(cls, expression: object, timezone: object = "UTC") -> Cron:
        """Check both; `InvalidSchedule` (one line naming the field) when either is bad."""
        text = _checked(CRON, expression, "cron")
        zone = parse_zone(timezone)
        fields = NICKNAMES.get(text.lower(), text)
        count = len(fields.split())
        if count != 5:
            raise InvalidSchedule(
                field="cron",
                reason=f"{limits.shown(text)} has {count} field{'s' * (count != 1)}; "
                f"expected 5 ({FIELDS}) or a nickname such as @daily",
            )
        try:
            next(CronSim(fields, datetime(2000, 1, 1, tzinfo=zone)))
        except CronSimError as error:
            raise InvalidSchedule(
                field="cron", reason=f"{limits.shown(text)} is not a cron expression ({error})"
            ) from None
        except StopIteration:  # cronsim gives up after 50 years without a match
            raise InvalidSchedule(
                field="cron", reason=f"{limits.shown(text)} never matches a date"
            ) from None
        return cls(fields, zone)

    def ticks_after(self, after: datetime) -> Iterator[datetime]:
        """Every tick strictly after ``after``, as UTC instants, in order."""
        local = after.astimezone(self.zone)
        for tick in CronSim(self.expression, local):
            instant = tick.astimezone(UTC)
            # Debian's rule puts a repeated local time at its first occurrence, which can be
            # before `after` when `after` falls in the second one: compare instants.
            if instant > after:
                yield instant

    def next_tick(self, after: datetime) -> datetime | None:
        """The first tick after ``after`` (None if none within cronsim's 50 years)."""
        return next(self.ticks_after(after), None)

    def latest(self, after: datetime, until: datetime, count: int) -> tuple[list[datetime], bool]:
        """The last ``count`` ticks in (``after``, ``until``], oldest first, and whether
        earlier ones were left out.

        Looks back over a window that grows fourfold from an hour until it holds more than
        ``count`` ticks or reaches ``after``, so a long downtime costs about as many steps as
        the ticks kept, not as the ticks missed.
        """
        window = FIRST_WINDOW
        while True:
            start = after if until - after <= window else until - window
            found: deque[datetime] = deque(maxlen=count + 1)
            for tick in self.ticks_after(start):
                if tick > until:
                    break
                found.append(tick)
            if len(found) > count or start == after:
                ticks = list(found)
                return ticks[-count:], len(ticks) > count
            window *= 4

    def due(self, after: datetime, now: datetime, catch_up: CatchUp) -> Due:
        """The ticks in (``after``, ``now``] to enqueue under ``catch_up``.

        ``after`` is where the schedule stands: its latest tick dealt with, or when it was
        added or replaced.
        """
        keep = MAX_CATCH_UP if catch_up is CatchUp.ALL else 1
        ticks, more = self.latest(after, now, keep)
        if not ticks:
            return Due([], None, skipped=False)
        if catch_up is CatchUp.NONE and now - ticks[-1] > ON_TIME:
            return Due([], ticks[-1], skipped=True)
        return Due(ticks, ticks[-1], skipped=more)


def parse_zone(timezone: object) -> zoneinfo.ZoneInfo:
    """An IANA time zone (``Europe/Berlin``, ``UTC``), else `InvalidSchedule`."""
    key = _checked(TIMEZONE, timezone, "timezone")
    if key not in MACHINE_ZONES:
        try:
            return zoneinfo.ZoneInfo(key)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            pass
    raise InvalidSchedule(
        field="timezone",
        reason=f"unknown time zone {limits.shown(key)} (give an IANA name such as "
        "Europe/Berlin or UTC)",
    )


def _checked(rule: limits.Text, value: object, field: str) -> str:
    try:
        return rule.check(value, field)
    except InvalidField as error:
        raise InvalidSchedule(field=field, reason=error.reason) from None
