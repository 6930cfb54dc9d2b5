"""The consumer's dedupe window: highest handled version per job, for a bounded number of jobs."""

from __future__ import annotations

import pytest
from jobtrail.adapters.kafka.version_window import Verdict, VersionWindow


def test_a_version_not_above_the_last_handled_one_is_a_duplicate() -> None:
    window = VersionWindow()
    assert window.check("a", 1) is Verdict.NEW
    window.accept("a", 1)
    window.accept("a", 2)
    assert [window.check("a", v) for v in (1, 2, 3)] == [
        Verdict.DUPLICATE,
        Verdict.DUPLICATE,
        Verdict.NEW,
    ]


def test_skipping_a_version_is_a_gap_but_a_first_sighting_above_1_is_not() -> None:
    window = VersionWindow()
    assert window.check("a", 7) is Verdict.NEW  # started in the middle of the job's history
    window.accept("a", 7)
    assert window.check("a", 9) is Verdict.GAP


def test_only_checking_remembers_nothing() -> None:
    window = VersionWindow()
    window.check("a", 1)
    assert window.last("a") is None and len(window) == 0


def test_the_least_recently_seen_job_is_forgotten_beyond_the_capacity() -> None:
    window = VersionWindow(capacity=2)
    window.accept("a", 1)
    window.accept("b", 1)
    window.accept("a", 2)  # a is now the most recent
    window.accept("c", 1)
    assert len(window) == 2
    assert window.last("b") is None  # forgotten: its re-sent version 1 would pass again
    assert window.check("b", 1) is Verdict.NEW
    assert (window.last("a"), window.last("c")) == (2, 1)


def test_a_window_of_no_jobs_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 job"):
        VersionWindow(capacity=0)


# ------------------------------------------------------------------ chain checks

H1, H2, H3, FORGED = ("1" * 64, "2" * 64, "3" * 64, "f" * 64)


def test_the_next_version_must_carry_the_previous_events_hash() -> None:
    window = VersionWindow()
    assert window.check("a", 1, "") is Verdict.NEW
    window.accept("a", 1, H1)
    assert window.last_hash("a") == H1
    assert window.check("a", 2, H1) is Verdict.NEW
    assert window.check("a", 2, FORGED) is Verdict.CHAIN_BREAK
    assert window.expected_prev_hash("a", 2) == H1
    window.accept("a", 2, H2)
    assert window.check("a", 3, H2) is Verdict.NEW
    assert window.check("a", 3, H1) is Verdict.CHAIN_BREAK


def test_a_version_1_must_have_an_empty_prev_hash() -> None:
    window = VersionWindow()
    assert window.check("a", 1, FORGED) is Verdict.CHAIN_BREAK
    assert window.expected_prev_hash("a", 1) == ""


def test_a_duplicate_or_a_gap_is_reported_as_such_never_as_a_chain_break() -> None:
    window = VersionWindow()
    window.accept("a", 1, H1)
    window.accept("a", 2, H2)
    assert window.check("a", 2, FORGED) is Verdict.DUPLICATE
    assert window.check("a", 1, FORGED) is Verdict.DUPLICATE
    assert window.check("a", 4, FORGED) is Verdict.GAP  # v3's hash is unknown: no check


def test_links_the_window_did_not_see_both_ends_of_are_not_checked() -> None:
    window = VersionWindow(capacity=1)
    assert window.check("a", 7, FORGED) is Verdict.NEW  # first seen mid-history
    window.accept("a", 7, H3)
    window.accept("b", 1, H1)  # forgets a
    assert window.last_hash("a") is None
    assert window.check("a", 8, FORGED) is Verdict.NEW
    window.accept("b", 2)  # accepted without a hash (chain checks off): nothing to compare
    assert window.check("b", 3, FORGED) is Verdict.NEW


def test_without_a_prev_hash_only_versions_are_checked() -> None:
    window = VersionWindow()
    window.accept("a", 1, H1)
    assert window.check("a", 2) is Verdict.NEW
    assert window.check("a", 1) is Verdict.DUPLICATE
