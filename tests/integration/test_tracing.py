"""W3C trace context end to end (issue 13, part 2): a traceparent given at submit is kept in
every event's metadata (stored, `history --json`, replay clean), sent as a Kafka header, and
is the parent of each attempt's OpenTelemetry span; a malformed one writes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.kafka.publisher import KafkaSettings
from jobtrail.adapters.kafka.relay import RelaySettings
from jobtrail.domain.errors import InvalidField
from jobtrail.domain.job import Meta
from jobtrail.processors.engine.tracing import AttemptTracer
from jobtrail.processors.engine.worker import WorkerSettings
from kafka import KafkaConsumer

from tests.helpers import event_count
from tests.kafka_broker import Broker, unique_name

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{SPAN_ID}-01"
FAST = WorkerSettings(until_empty=True, poll_seconds=0.01, concurrency=2)


def jobtrail_cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "JOBTRAIL_DATABASE_URL": url}
    env.pop("JOBTRAIL_APP", None)
    return subprocess.run(
        [sys.executable, "-m", "jobtrail", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_traceparent_is_kept_in_every_event_of_the_job(trail: Jobtrail) -> None:
    traced = trail.submit("asset_image_generation", {"duration_ms": 0}, traceparent=TRACEPARENT)
    plain = trail.submit("asset_image_generation", {"duration_ms": 0})
    trail.worker(FAST).run()
    events = trail.store.load(traced)
    assert [e.type for e in events][-1] == "JobCompleted"
    assert [e.metadata().get("traceparent") for e in events] == [TRACEPARENT] * len(events)
    assert all("traceparent" not in e.metadata() for e in trail.store.load(plain))
    assert all(e.compute_hash() == e.hash for e in events)


def test_meta_traceparent_is_the_same_as_the_argument(trail: Jobtrail) -> None:
    job_id = trail.submit("t", meta=Meta(actor="svc", traceparent=TRACEPARENT))
    (queued,) = trail.store.load(job_id)
    assert queued.metadata() == {
        "actor": "svc",
        "correlation_id": None,
        "hash_form": "jcs",
        "traceparent": TRACEPARENT,
    }


def test_the_cli_submits_prints_and_replays_it(sqlite_url: str) -> None:
    submitted = jobtrail_cli(
        sqlite_url, "submit", "asset_image_generation", "--traceparent", TRACEPARENT
    )
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    worked = jobtrail_cli(sqlite_url, "worker", "--until-empty")
    assert worked.returncode == 0, worked.stderr
    history = jobtrail_cli(sqlite_url, "history", job_id, "--json")
    assert history.returncode == 0, history.stderr
    envelopes = json.loads(history.stdout)
    types = [e["type"] for e in envelopes]
    assert types[:2] == ["JobQueued", "JobStarted"] and types[-1] == "JobCompleted"
    assert {e["metadata"]["traceparent"] for e in envelopes} == {TRACEPARENT}
    replay = jobtrail_cli(sqlite_url, "replay")
    assert replay.returncode == 0, replay.stdout + replay.stderr


BAD = [
    f"00-{TRACE_ID}-{SPAN_ID}",  # a field missing
    f"00-{TRACE_ID[:-1]}x-{SPAN_ID}-01",  # not hex
    f"00-{'0' * 32}-{SPAN_ID}-01",  # all-zero trace id
    f"00-{TRACE_ID}-{'0' * 16}-01",  # all-zero span id
    f"ff-{TRACE_ID}-{SPAN_ID}-01",  # version ff
]


@pytest.mark.parametrize("bad", BAD)
def test_a_malformed_traceparent_is_refused_by_the_api_and_nothing_is_written(
    trail: Jobtrail, bad: str
) -> None:
    with pytest.raises(InvalidField) as refused:
        trail.submit("t", traceparent=bad)
    assert refused.value.field == "meta.traceparent"
    with pytest.raises(InvalidField):
        trail.submit("t", meta=Meta(traceparent=bad))
    assert event_count(trail) == 0


@pytest.mark.parametrize("bad", [BAD[1], BAD[4]])
def test_a_malformed_traceparent_is_refused_by_the_cli_in_one_line(
    sqlite_url: str, bad: str
) -> None:
    trail = connect(sqlite_url)
    trail.close()
    refused = jobtrail_cli(sqlite_url, "submit", "t", "--traceparent", bad)
    assert refused.returncode == 1
    assert refused.stdout == ""
    lines = refused.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobtrail: error: meta.traceparent: "), lines
    trail = connect(sqlite_url)
    try:
        assert event_count(trail) == 0
    finally:
        trail.close()


def test_the_relay_sends_the_traceparent_header(trail: Jobtrail, kafka_broker: Broker) -> None:
    traced = trail.submit("asset_image_generation", {"duration_ms": 0}, traceparent=TRACEPARENT)
    plain = trail.submit("asset_image_generation", {"duration_ms": 0})
    trail.worker(FAST).run()
    topic = unique_name()
    relay = trail.relay(
        KafkaSettings(kafka_broker.bootstrap, topic, partitions=1), RelaySettings(poll=0.05)
    )
    relay.run(until_caught_up=True)
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=kafka_broker.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=3000,
    )
    try:
        records = list(consumer)
    finally:
        consumer.close()
    by_job: dict[str, list[dict[str, bytes]]] = {}
    for record in records:
        by_job.setdefault(record.key.decode(), []).append(dict(record.headers))
    assert len(by_job[traced]) >= 3 and len(by_job[plain]) >= 3  # queued, started, …, completed
    assert all(h["traceparent"] == TRACEPARENT.encode() for h in by_job[traced])
    assert all("traceparent" not in h for h in by_job[plain])


# ------------------------------------------------------------------ OpenTelemetry spans


@pytest.fixture(scope="module")
def provider_exporter() -> object:
    """The SDK's in-memory exporter on the global tracer provider (set once per process)."""
    sdk = pytest.importorskip("opentelemetry.sdk.trace")
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    provider = trace.get_tracer_provider()
    if not isinstance(provider, sdk.TracerProvider):
        provider = sdk.TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def exporter(provider_exporter: object) -> Iterator[object]:
    provider_exporter.clear()  # type: ignore[attr-defined]
    yield provider_exporter
    provider_exporter.clear()  # type: ignore[attr-defined]


def test_each_attempt_is_a_span_continuing_the_submitter_s_trace(
    sqlite_url: str, exporter: object
) -> None:
    from opentelemetry.trace import SpanKind, StatusCode

    trail = connect(sqlite_url)
    try:
        ok = trail.submit("asset_image_generation", {"duration_ms": 0}, traceparent=TRACEPARENT)
        broke = trail.submit(
            "shot_video_generation", {"duration_ms": 0, "credits": 0}, traceparent=TRACEPARENT
        )
        retried = trail.submit("asset_image_generation", {"duration_ms": 0, "fail_times": 1})
        trail.worker(FAST).run()
        assert trail.get(broke)["status"] == "failed"
    finally:
        trail.close()
    spans = exporter.get_finished_spans()  # type: ignore[attr-defined]
    by_job: dict[str, list[object]] = {}
    for span in spans:
        by_job.setdefault(span.attributes["jobtrail.job.id"], []).append(span)
    (done,) = by_job[ok]
    assert done.name == "jobtrail.process asset_image_generation"
    assert done.kind == SpanKind.CONSUMER
    assert format(done.context.trace_id, "032x") == TRACE_ID
    assert done.parent is not None and format(done.parent.span_id, "016x") == SPAN_ID
    assert done.parent.is_remote
    assert done.attributes["jobtrail.outcome"] == "completed"
    assert done.status.status_code == StatusCode.OK
    (failed,) = by_job[broke]
    assert format(failed.context.trace_id, "032x") == TRACE_ID
    assert format(failed.parent.span_id, "016x") == SPAN_ID
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["jobtrail.outcome"] == "failed"
    assert failed.attributes["jobtrail.error.code"] == "insufficient_credits"
    assert failed.attributes["jobtrail.error.category"] == "user"
    assert failed.attributes["error.type"] == "InsufficientCredits"
    first, second = sorted(by_job[retried], key=lambda s: s.attributes["jobtrail.job.attempt"])
    assert first.parent is None and second.parent is None  # no traceparent: root spans
    assert first.context.trace_id != second.context.trace_id
    assert first.attributes["jobtrail.error.retryable"] is True
    assert second.attributes["jobtrail.outcome"] == "completed"


def test_the_worker_runs_without_opentelemetry(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # `import opentelemetry` fails
    assert not AttemptTracer().enabled
    trail = connect(sqlite_url)
    try:
        job_id = trail.submit("asset_image_generation", {"duration_ms": 0}, traceparent=TRACEPARENT)
        worker = trail.worker(FAST)
        assert not worker._threads.tracer.enabled
        worker.run()
        row = trail.get(job_id)
    finally:
        trail.close()
    assert row["status"] == "completed"
