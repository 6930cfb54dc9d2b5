"""Seals are append-only like the log, on every backend."""

from __future__ import annotations

import pytest
from jobtrail.adapters.audit.seal import append_seal
from jobtrail.adapters.bootstrap import Jobtrail
from jobtrail.adapters.sql.engine import translated_errors
from jobtrail.domain.errors import AppendOnlyViolation
from sqlalchemy import text


def test_seals_cannot_be_changed_or_deleted(trail: Jobtrail) -> None:
    trail.submit("t")
    first = append_seal(trail.engine, "test")
    trail.submit("t")
    second = append_seal(trail.engine, "test")
    assert (first.event_count, second.event_count, second.previous is not None) == (1, 2, True)
    for statement in ("UPDATE job_log_seals SET event_count = 0", "DELETE FROM job_log_seals"):
        with (
            pytest.raises(AppendOnlyViolation, match="job_log_seals is append-only"),
            translated_errors(),
            trail.engine.begin() as conn,
        ):
            conn.execute(text(statement))


@pytest.mark.postgres
def test_seals_cannot_be_truncated(pg_trail: Jobtrail) -> None:
    with (
        pytest.raises(AppendOnlyViolation),
        translated_errors(),
        pg_trail.engine.begin() as conn,
    ):
        conn.execute(text("TRUNCATE job_log_seals"))
