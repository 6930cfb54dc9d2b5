"""Cron expressions, time zones and catch-up policies (`jobtrail.adapters.schedules.cron`).

Pure functions of the expression, the zone and the instants given: no database, no clock.
Instants are UTC; Europe/Berlin moves to summer time on 2026-03-29 at 02:00 local (01:00Z,
clocks jump to 03:00) and back on 2026-10-25 at 03:00 local (01:00Z, clocks go back to
02:00, so 02:00-02:59 happens twice).
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from jobtrail.adapters.schedules.cron import MAX_CATCH_UP, ON_TIME, CatchUp, Cron, parse_zone
from jobtrail.adapters.schedules.definition import Definition, tick_key
from jobtrail.domain import limits
from jobtrail.domain.errors import InvalidCommand, InvalidField, InvalidSchedule

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
BERLIN = "Europe/Berlin"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def ticks(cron: Cron, after: datetime, until: datetime) -> list[datetime]:
    """Every tick in (after, until], by plain forward iteration (the reference)."""
    return list(itertools.takewhile(lambda t: t <= until, cron.ticks_after(after)))


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("expression", "fields"),
    [
        ("*/5 * * * *", "*/5 * * * *"),
        ("0 9 * * MON-FRI", "0 9 * * MON-FRI"),
        ("0 0 L * *", "0 0 L * *"),
        ("0 0 * * MON#1", "0 0 * * MON#1"),
        ("@daily", "0 0 * * *"),
        ("@HOURLY", "0 * * * *"),
        ("@yearly", "0 0 1 1 *"),
    ],
)
def test_valid_expressions_parse(expression: str, fields: str) -> None:
    assert Cron.parse(expression, "UTC").expression == fields


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("* * * *", "has 4 fields"),
        ("0 * * * * *", "has 6 fields"),  # seconds are refused
        ("@sometimes", "has 1 field;"),
        ("61 * * * *", "Bad minute"),
        ("*/0 * * * *", "Bad minute"),
        ("0 24 * * *", "Bad hour"),
        ("0 0 30 2 *", "Bad day-of-month"),
        ("0 0 * * FUNDAY", "Bad day-of-week"),
        ("5-1 * * * *", "Bad minute"),
        ("", "must not be empty"),
        ("* * * * *\x00", "U+0000"),
        ("* " * 101, "characters long"),
    ],
)
def test_malformed_expressions_are_one_line_naming_the_field(expression: str, words: str) -> None:
    with pytest.raises(InvalidSchedule) as caught:
        Cron.parse(expression, "UTC")
    message = str(caught.value)
    assert message.startswith("cron: ") and words in message and "\n" not in message
    assert isinstance(caught.value, InvalidCommand) and isinstance(caught.value, InvalidField)


def test_an_expression_that_is_not_text_is_refused() -> None:
    with pytest.raises(InvalidSchedule, match=r"^cron: must be a str"):
        Cron.parse(5, "UTC")


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "europe/berlin", "", " UTC", "/etc/passwd", "../x", "localtime"]
)
def test_unknown_time_zones_are_refused(zone: str) -> None:
    with pytest.raises(InvalidSchedule, match=r"^timezone: ") as caught:
        Cron.parse("* * * * *", zone)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York", "Etc/GMT+5"])
def test_iana_time_zones_are_accepted(zone: str) -> None:
    assert parse_zone(zone).key == zone


@pytest.mark.parametrize("value", ["latest", "all", "none"])
def test_catch_up_policies(value: str) -> None:
    assert CatchUp.parse(value) == value


@pytest.mark.parametrize("value", ["sometimes", "LATEST", "", None, 1])
def test_an_unknown_catch_up_policy_is_refused(value: object) -> None:
    with pytest.raises(InvalidSchedule, match=r"^catch_up: must be one of latest, all, none"):
        CatchUp.parse(value)


# ------------------------------------------------------------------ ticks


def test_ticks_are_utc_instants_strictly_after_the_start() -> None:
    cron = Cron.parse("*/5 * * * *", "UTC")
    assert cron.next_tick(T0) == T0 + timedelta(minutes=5)  # T0 itself is not after T0
    assert cron.next_tick(T0 - timedelta(microseconds=1)) == T0
    assert cron.next_tick(T0 + timedelta(seconds=1)) == T0 + timedelta(minutes=5)
    first = cron.next_tick(T0)
    assert first is not None and first.tzinfo is UTC


def test_a_local_expression_ticks_at_local_times() -> None:
    cron = Cron.parse("0 9 * * *", "America/New_York")
    assert cron.next_tick(T0) == utc("2026-11-30T09:00:00-05:00")  # T0 is 05:00 there


def test_the_idempotency_key_names_the_schedule_and_the_tick() -> None:
    assert tick_key("report", T0) == "schedule:report:2026-11-30T10:00:00+00:00"


# ------------------------------------------------------------------ catch-up


def test_nothing_is_due_before_the_first_tick() -> None:
    due = Cron.parse("*/5 * * * *", "UTC").due(T0, T0 + timedelta(minutes=4), CatchUp.LATEST)
    assert (due.ticks, due.latest, due.skipped) == ([], None, False)


def test_a_tick_is_due_at_its_own_time() -> None:
    due = Cron.parse("*/5 * * * *", "UTC").due(T0, T0 + timedelta(minutes=5), CatchUp.NONE)
    assert due.ticks == [T0 + timedelta(minutes=5)] and not due.skipped


def test_latest_enqueues_only_the_most_recent_missed_tick() -> None:
    now = T0 + timedelta(minutes=23)
    due = Cron.parse("*/5 * * * *", "UTC").due(T0, now, CatchUp.LATEST)
    assert due.ticks == [T0 + timedelta(minutes=20)]
    assert due.latest == T0 + timedelta(minutes=20) and due.skipped


def test_all_enqueues_every_missed_tick() -> None:
    now = T0 + timedelta(minutes=23)
    due = Cron.parse("*/5 * * * *", "UTC").due(T0, now, CatchUp.ALL)
    assert due.ticks == [T0 + timedelta(minutes=m) for m in (5, 10, 15, 20)]
    assert due.latest == due.ticks[-1] and not due.skipped


def test_all_is_capped_at_the_latest_max_catch_up_ticks() -> None:
    now = T0 + timedelta(days=3)  # 4,320 minutes missed
    due = Cron.parse("* * * * *", "UTC").due(T0, now, CatchUp.ALL)
    assert len(due.ticks) == MAX_CATCH_UP == 1000
    assert due.ticks[-1] == now and due.ticks[0] == now - timedelta(minutes=999)
    assert due.skipped


def test_none_enqueues_a_tick_seen_on_time() -> None:
    now = T0 + timedelta(minutes=5) + ON_TIME
    due = Cron.parse("*/5 * * * *", "UTC").due(T0 - timedelta(hours=1), now, CatchUp.NONE)
    assert due.ticks == [T0 + timedelta(minutes=5)] and due.skipped


def test_none_skips_missed_ticks_and_moves_past_them() -> None:
    now = T0 + timedelta(minutes=5) + ON_TIME + timedelta(seconds=1)
    due = Cron.parse("*/5 * * * *", "UTC").due(T0 - timedelta(hours=1), now, CatchUp.NONE)
    assert due.ticks == [] and due.latest == T0 + timedelta(minutes=5) and due.skipped


@pytest.mark.parametrize(
    "expression", ["* * * * *", "*/7 * * * *", "0 * * * *", "30 2 * * *", "0 0 1 * *", "0 0 29 2 *"]
)
@pytest.mark.parametrize("downtime", [timedelta(minutes=3), timedelta(hours=5), timedelta(days=9)])
@pytest.mark.parametrize("count", [1, 5])
def test_the_growing_window_finds_what_plain_iteration_finds(
    expression: str, downtime: timedelta, count: int
) -> None:
    cron = Cron.parse(expression, BERLIN)
    start = utc("2026-03-27T22:13:00+00:00")  # the window crosses spring-forward
    every = ticks(cron, start, start + downtime)
    latest, more = cron.latest(start, start + downtime, count)
    assert latest == every[-count:] and more == (len(every) > count)


# ------------------------------------------------------------------ daylight saving time


def test_spring_forward_runs_a_skipped_fixed_time_at_the_first_minute_after_the_gap() -> None:
    """02:30 does not exist in Berlin on 2026-03-29: Debian cron runs it at 03:00 CEST."""
    cron = Cron.parse("30 2 * * *", BERLIN)
    found = ticks(cron, utc("2026-03-27T12:00:00+00:00"), utc("2026-03-31T12:00:00+00:00"))
    assert found == [
        utc("2026-03-28T02:30:00+01:00"),
        utc("2026-03-29T03:00:00+02:00"),  # = 01:00Z, the moment the clocks jump
        utc("2026-03-30T02:30:00+02:00"),
        utc("2026-03-31T02:30:00+02:00"),
    ]


def test_fall_back_runs_a_repeated_fixed_time_once_at_its_first_occurrence() -> None:
    """02:30 happens twice in Berlin on 2026-10-25 (00:30Z in CEST, 01:30Z in CET)."""
    cron = Cron.parse("30 2 * * *", BERLIN)
    found = ticks(cron, utc("2026-10-24T12:00:00+00:00"), utc("2026-10-26T12:00:00+00:00"))
    assert found == [utc("2026-10-25T02:30:00+02:00"), utc("2026-10-26T02:30:00+01:00")]


def test_starting_inside_the_repeated_hour_does_not_repeat_its_tick() -> None:
    """A scheduler that looks at 02:10 CET (the second 02:10) must not enqueue the 02:30
    that already ran at 02:30 CEST."""
    cron = Cron.parse("30 2 * * *", BERLIN)
    second_0210 = utc("2026-10-25T02:10:00+01:00")
    assert cron.next_tick(second_0210) == utc("2026-10-26T02:30:00+01:00")
    due = cron.due(second_0210, utc("2026-10-25T02:45:00+01:00"), CatchUp.ALL)
    assert due.ticks == []


@pytest.mark.parametrize(
    ("day", "hours"), [("2026-03-29", 23), ("2026-10-25", 25), ("2026-06-01", 24)]
)
def test_frequent_expressions_follow_real_time_across_the_change(day: str, hours: int) -> None:
    """``*/30``: every half hour of real time, so two ticks per hour the local day has (none
    in the skipped hour, four in the repeated one)."""
    cron = Cron.parse("*/30 * * * *", BERLIN)
    midnight = datetime.fromisoformat(f"{day}T00:00:00").replace(tzinfo=parse_zone(BERLIN))
    start = midnight.astimezone(UTC) - timedelta(seconds=1)
    end = start + timedelta(hours=hours)
    found = ticks(cron, start, end)
    assert len(found) == 2 * hours
    assert all(b - a == timedelta(minutes=30) for a, b in itertools.pairwise(found))


# ------------------------------------------------------------------ definitions


def checked(**changes: object) -> Definition:
    fields: dict[str, object] = {
        "name": "report",
        "cron": "*/5 * * * *",
        "job_type": "build_report",
        "payload": {},
        "timezone": "UTC",
        "catch_up": "latest",
        "priority": 0,
        "max_attempts": 3,
        "queue": "default",
        **changes,
    }
    return Definition.checked(**fields)  # type: ignore[arg-type]


def test_a_checked_definition_keeps_what_it_was_given() -> None:
    definition = checked(catch_up="all", priority=5)
    assert definition.values()["catch_up"] == "all" and definition.priority == 5


@pytest.mark.parametrize(
    ("changes", "start"),
    [
        ({"name": ""}, "name: must not be empty"),
        ({"name": "x" * 161}, "name: is 161 characters long; the limit is 160"),
        ({"name": " report"}, "name: ' report' starts or ends with a space"),
        ({"job_type": ""}, "job_type: must not be empty"),
        ({"priority": 2**31}, "priority: must be a whole number"),
        ({"max_attempts": 0}, "max_attempts: must be a whole number from 1 to 1000"),
        ({"queue": ""}, "queue: must not be empty"),
        ({"payload": {"x": float("nan")}}, "payload.x: "),
        ({"catch_up": "often"}, "catch_up: must be one of"),
    ],
)
def test_a_bad_definition_is_refused_naming_the_field(
    changes: dict[str, object], start: str
) -> None:
    with pytest.raises(InvalidCommand) as caught:
        checked(**changes)
    assert str(caught.value).startswith(start)


def test_the_longest_name_fits_the_idempotency_key() -> None:
    name = "x" * 160
    key = tick_key(checked(name=name).name, datetime(9999, 12, 31, 23, 59, tzinfo=UTC))
    assert limits.IDEMPOTENCY_KEY.check(key, "key") == key
