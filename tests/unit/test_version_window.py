"""The consumer's dedupe window: highest handled version per job, for a bounded number of jobs."""

from __future__ import annotations

import pytest
from jobtrail.adapters.kafka.consumer import Verdict, VersionWindow


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
