"""The relay's position and lease, on every backend: one publisher at a time, fenced saves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.kafka.relay_position import LostRelayLease, SqlRelayPosition

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LEASE = timedelta(seconds=10)


@pytest.fixture
def positions(trail: Jobtrail) -> SqlRelayPosition:
    return SqlRelayPosition(trail.engine, name="job-events")


def test_the_first_relay_starts_at_position_zero_and_holds_the_lease(
    positions: SqlRelayPosition,
) -> None:
    assert positions.acquire("a", NOW, LEASE) == 0
    assert positions.holder() == ("a", 0, NOW + LEASE)


def test_a_second_relay_stands_by_while_the_lease_runs(positions: SqlRelayPosition) -> None:
    positions.acquire("a", NOW, LEASE)
    assert positions.acquire("b", NOW + LEASE - timedelta(seconds=1), LEASE) is None
    assert positions.holder()[0] == "a"


def test_a_standby_takes_over_at_the_saved_position_once_the_lease_expired(
    positions: SqlRelayPosition,
) -> None:
    positions.acquire("a", NOW, LEASE)
    positions.save("a", 41, NOW, LEASE)
    later = NOW + LEASE + timedelta(seconds=1)
    assert positions.acquire("b", later, LEASE) == 41
    assert positions.holder() == ("b", 41, later + LEASE)


def test_a_relay_that_lost_its_lease_cannot_move_the_position(
    positions: SqlRelayPosition,
) -> None:
    positions.acquire("a", NOW, LEASE)
    positions.acquire("b", NOW + 2 * LEASE, LEASE)
    with pytest.raises(LostRelayLease, match="another relay took over"):
        positions.save("a", 99, NOW + 2 * LEASE, LEASE)
    assert positions.holder()[1] == 0


def test_saving_renews_the_lease(positions: SqlRelayPosition) -> None:
    positions.acquire("a", NOW, LEASE)
    positions.save("a", 5, NOW + LEASE - timedelta(seconds=1), LEASE)
    assert positions.acquire("b", NOW + LEASE + timedelta(seconds=1), LEASE) is None


def test_a_released_lease_is_free_at_once(positions: SqlRelayPosition) -> None:
    positions.acquire("a", NOW, LEASE)
    positions.save("a", 7, NOW, LEASE)
    positions.release("a", NOW)
    assert positions.acquire("b", NOW, LEASE) == 7


def test_each_topic_has_its_own_position(trail: Jobtrail) -> None:
    first = SqlRelayPosition(trail.engine, name="job-events")
    other = SqlRelayPosition(trail.engine, name="job-events-v2")
    first.acquire("a", NOW, LEASE)
    first.save("a", 12, NOW, LEASE)
    assert other.acquire("a", NOW, LEASE) == 0
