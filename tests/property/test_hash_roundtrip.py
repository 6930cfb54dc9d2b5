"""Whatever is accepted re-verifies wherever it is read back: a Hypothesis property.

Any JSON value in the domain the boundary accepts (finite floats of every magnitude, integers
within ±(2^53 - 1), strings without lone surrogates or U+0000, str keys) is submitted as a
payload, returned by a processor as the job's result, and read back from each store (SQLite,
PostgreSQL's jsonb), from the relay's records (the envelope the database builds for Kafka)
and from an export file: every event re-hashes to its stored hash, and `jobtrail replay`
(database and file) finds the log clean. The topic is replayed in
tests/integration/test_replay_kafka.py.

Each backend keeps one database for the module (examples add jobs to it), so the last test
exports and replays everything the property wrote, with the edge payloads besides.
"""

from __future__ import annotations

import json
import math
import struct
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jobtrail.adapters.audit.reads import LIVE, stream_records
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.cli.main import main
from jobtrail.adapters.kafka.relay_source import SqlRecordSource
from jobtrail.adapters.sql.schema import job_events
from jobtrail.domain.canonical import covered_hash
from jobtrail.processors.base import JobContext, JobView
from jobtrail.processors.engine.worker import WorkerSettings
from jobtrail.processors.registry import Registry
from psycopg import sql
from sqlalchemy import func, select

from tests.conftest import _admin, _url_for, database_url
from tests.integration.test_replay import EDGE_PAYLOAD

MAX_SAFE = 2**53 - 1
FAST = WorkerSettings(until_empty=True, poll_seconds=0.01, progress_seconds=0.05)

characters = st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00") | (
    st.sampled_from([*map(chr, range(1, 0x20)), '"', "\\", "\u2028", "\ue000", "\U0001f600"])
)
strings = st.text(characters, max_size=5)
floats = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(0, 2**64 - 1)
    .map(lambda bits: struct.unpack(">d", bits.to_bytes(8, "big"))[0])
    .filter(math.isfinite),
    st.sampled_from([1e21, -0.0, 1e16, 1.0, 1e-7, 0.00001, 5e-324, 1.7976931348623157e308]),
)
scalars = st.none() | st.booleans() | st.integers(-MAX_SAFE, MAX_SAFE) | floats | strings
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(strings, children, max_size=4)
    ),
    max_leaves=12,
)


RESULTS: dict[str, Any] = {}
"""The value each job's processor returns, by the payload's ``token``: the value as the
caller made it, not as a store gave the payload back."""


def echo_registry() -> Registry:
    """A processor that returns the value its payload's token names."""
    registry = Registry()

    @registry.processor("echo")
    def echo(job: JobView, ctx: JobContext) -> Any:
        return RESULTS.pop(job.payload["token"])

    return registry


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def module_trail(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Jobtrail]:
    """One database per backend for the module's examples."""
    if request.param == "sqlite":
        trail = connect(f"sqlite:///{tmp_path_factory.mktemp('roundtrip') / 'jobtrail.db'}")
        trail.init_db()
        yield trail
        trail.close()
        return
    template: str = request.getfixturevalue("postgres_template")
    name = f"jobtrail_roundtrip_{uuid.uuid4().hex[:8]}"
    with _admin() as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    trail = connect(database_url(_url_for(name)))
    yield trail
    trail.close()
    with _admin() as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def last_position(trail: Jobtrail) -> int:
    with trail.engine.connect() as conn:
        found: int = conn.execute(
            select(func.coalesce(func.max(job_events.c.position), 0))
        ).scalar_one()
        return found


def round_trip(trail: Jobtrail, value: Any) -> None:
    """Submit ``value`` as a payload, have a worker return it as the result, read it all back."""
    payload = value if isinstance(value, dict) else {}
    before = last_position(trail)
    token = uuid.uuid4().hex
    RESULTS[token] = value
    job_id = trail.submit("echo", {**payload, "value": value, "token": token})
    stats = trail.worker(FAST, registry=echo_registry()).run()
    assert stats.completed == 1, stats

    # the store's typed events (the worker's and the API's reads)
    events = trail.store.load(job_id)
    assert [e.type for e in events] == ["JobQueued", "JobStarted", "JobCompleted"]
    assert events[-1].result == value or _same_doubles(events[-1].result, value)
    for event in events:
        assert event.metadata()["hash_form"] == "jcs"
        assert event.compute_hash() == event.hash, event.type

    # the stored rows as replay reads them (jsonb's text on PostgreSQL)
    with trail.engine.connect() as conn, conn.begin():
        records = list(stream_records(conn, LIVE, job_id, None))
    assert [covered_hash(r.covered()) for r in records] == [r.hash for r in records]

    # the relay's records: the envelope the database builds for Kafka
    batch = SqlRecordSource(trail.engine).records_after(before, 100)
    envelopes = [json.loads(r.value) for r in batch.records]
    assert [e["job_id"] for e in envelopes] == [job_id] * 3
    for envelope in envelopes:
        covered = {k: v for k, v in envelope.items() if k not in ("position", "hash")}
        assert covered_hash(covered) == envelope["hash"], envelope["type"]


def _same_doubles(a: Any, b: Any) -> bool:
    """Equal as JSON values read as doubles (-0.0 and 0, 1e16 and 10000000000000000)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_doubles(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same_doubles, a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return bool(a == b)


@settings(
    max_examples=40,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(json_values)
@example(EDGE_PAYLOAD)
@example([1e21, -0.0, 1e16, 1.0, 1e-7])
@example({"one": 1.0, "negative_zero": -0.0})  # no exponent: the C encoder's text, unless caught
@example(1e16)
def test_any_accepted_value_rehashes_from_every_store_and_the_relay(
    module_trail: Jobtrail, value: Any
) -> None:
    round_trip(module_trail, value)


def test_the_whole_log_exports_and_replays_clean(
    module_trail: Jobtrail, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Everything the property wrote (and the edge payloads, for a run of this test alone):
    every line of an export re-hashes, and replay from the database and the file is clean."""
    round_trip(module_trail, EDGE_PAYLOAD)
    url = module_trail.engine.url.render_as_string(hide_password=False)
    out = tmp_path / "log.jsonl"
    assert main(["--db", url, "export", "--out", str(out)]) == 0
    # lines end with "\n" only: str.splitlines would also cut at a U+2028 inside a string
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").split("\n") if line]
    envelopes = [line for line in lines if "event_id" in line]
    assert len(envelopes) >= 3
    for envelope in envelopes:
        covered = {k: v for k, v in envelope.items() if k not in ("position", "hash")}
        assert covered_hash(covered) == envelope["hash"]
    capsys.readouterr()
    for source in ("db", f"file:{out}"):
        code = main(["--db", url, "replay", "--json", "--source", source])
        report = json.loads(capsys.readouterr().out)
        assert (code, report["problems"]) == (0, []), source
        assert report["hashes"]["jcs"] == report["events"] == len(envelopes)
