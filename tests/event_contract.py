"""Every event the test suite appends is checked against the published JSON Schema.

A pytest plugin (loaded by tests/conftest.py). It wraps `jobtrail.adapters.sql.store.write_appends`,
the one function every append of the SQL event store goes through (single appends, batches,
the worker's turns, on SQLite and PostgreSQL; `jobtrail.adapters.sql.queue` imports it by name, so
both references are wrapped): right after the writes it reads the events back in the same
transaction - so with the position the database assigned and the data as stored - and
validates each envelope as the relay publishes it (`event_from_envelope(row).envelope()`).

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

import jobtrail.adapters.kafka
import pytest
from jobtrail.adapters.sql import queue as sql_queue
from jobtrail.adapters.sql import store as sql_store
from jobtrail.adapters.sql.schema import job_events
from jobtrail.domain.events import event_from_envelope
from jobtrail.domain.ports import Append
from jsonschema import Draft202012Validator, FormatChecker
from sqlalchemy import Connection, select

SCHEMA_PATH = Path(jobtrail.adapters.kafka.__file__).parent / "schemas" / "job-event.schema.json"


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
_original_write = sql_store.write_appends
_WRITERS = (sql_store, sql_queue)
"""The modules whose `write_appends` is called."""


def _write_and_check(conn: Connection, appends: Sequence[Append]) -> None:
    _original_write(conn, appends)
    ids = [e.event_id for a in appends for e in a.events]
    if not ids:
        return
    query = select(*sql_store._EVENT_COLUMNS).where(job_events.c.event_id.in_(ids))
    rows = conn.execute(query).mappings().all()  # a killed connection fails the append here
    for row in rows:
        RECORDER.check(event_from_envelope(row).envelope())


def pytest_configure(config: pytest.Config) -> None:
    for module in _WRITERS:
        module.write_appends = _write_and_check  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    for module in _WRITERS:
        module.write_appends = _original_write  # type: ignore[attr-defined]


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
