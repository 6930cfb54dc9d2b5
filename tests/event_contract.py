"""Every event the test suite appends is checked against the published JSON Schema.

A pytest plugin (loaded by tests/conftest.py). It wraps `adapters.sql_store._insert_events`,
the one function every append of the SQL event store goes through (single appends, batches,
the worker's turns, on SQLite and PostgreSQL): right after the insert it reads the rows back
in the same transaction - so with the position the database assigned - and validates each
envelope exactly as the relay would publish it (`to_event(row).envelope()`).

A violation fails the test that caused it (at its teardown, even when the append ran in a
worker thread that swallowed nothing); anything appended outside a test (a module fixture)
fails the session. The terminal summary says how many envelopes of which types were checked.
Appends made in subprocesses (CLI tests running `jobtrail worker`) are not seen.
"""

from __future__ import annotations

import functools
import json
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker
from sqlalchemy import Connection, select
from sqlalchemy import exc as sa_exc

import adapters
from adapters import sql_store
from adapters.schema import job_events
from domain.events import Event

SCHEMA_PATH = Path(adapters.__file__).parent / "schemas" / "job-event.schema.json"


@functools.cache
def validator() -> Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=FormatChecker())


def violations(envelope: dict[str, Any]) -> list[str]:
    """What is wrong with `envelope` according to the schema (empty: nothing)."""
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(envelope)'}: {error.message}"
        for error in sorted(validator().iter_errors(envelope), key=lambda e: list(e.path))
    ]


class Recorder:
    """The envelopes seen so far, by type, and the ones that broke the schema."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.types: Counter[str] = Counter()
        self.event_ids: set[str] = set()
        self.violations: list[str] = []

    def check(self, envelope: dict[str, Any]) -> None:
        problems = violations(envelope)
        with self.lock:
            self.types[envelope.get("type", "?")] += 1
            self.event_ids.add(envelope.get("event_id", "?"))
            if problems:
                self.violations.append(
                    f"{envelope.get('type')} v{envelope.get('version')}: "
                    f"{'; '.join(problems)}\n    {json.dumps(envelope)}"
                )


RECORDER = Recorder()
_original_insert = sql_store._insert_events


def _insert_and_check(conn: Connection, events: Sequence[Event]) -> None:
    _original_insert(conn, events)
    ids = [e.event_id for e in events]
    query = select(*sql_store._EVENT_COLUMNS).where(job_events.c.event_id.in_(ids))
    try:
        rows = conn.execute(query).mappings().all()
    except sa_exc.DBAPIError:  # a connection killed on purpose: the append fails anyway
        return
    for row in rows:
        RECORDER.check(sql_store.to_event(row).envelope())


def pytest_configure(config: pytest.Config) -> None:
    sql_store._insert_events = _insert_and_check  # type: ignore[assignment]


def pytest_unconfigure(config: pytest.Config) -> None:
    sql_store._insert_events = _original_insert


@pytest.fixture(autouse=True)
def _events_keep_the_contract() -> Iterator[None]:
    before = len(RECORDER.violations)
    yield
    new = RECORDER.violations[before:]
    if new:
        pytest.fail(
            f"{len(new)} appended event(s) break {SCHEMA_PATH.name}:\n" + "\n".join(new[:10]),
            pytrace=False,
        )


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if RECORDER.violations and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    types = ", ".join(f"{name} {n}" for name, n in sorted(RECORDER.types.items()))
    total = sum(RECORDER.types.values())
    terminalreporter.write_line(
        f"event contract: {total} appended envelope(s) checked against "
        f"{SCHEMA_PATH.name} ({types or 'none'}); {len(RECORDER.violations)} violation(s)"
    )
    for violation in RECORDER.violations[:20]:
        terminalreporter.write_line(f"  {violation}", red=True)
