"""The topic and the contract as another team's Node.js service meets them (tests/node/verify.mjs).

A mixed batch of jobs (completed, failed, retried, cancelled, crashed, an unknown type, edge
payloads and results) runs on PostgreSQL and on SQLite and is published by the real relay;
then `node tests/node/verify.mjs` reads the whole topic with kafkajs, validates every record
with ajv strict, recomputes every hash with npm `canonicalize` (RFC 8785) and sha-256, checks
every chain and the AsyncAPI document with `@asyncapi/parser`, and must exit 0. A second,
fast test runs only the contract part (schema, AsyncAPI, hash vectors: no broker).

The Node packages come from tests/node/package-lock.json (`make test` runs `npm ci`). When
node or tests/node/node_modules is missing the tests skip, except under CI
(JOBTRAIL_REQUIRE_KAFKA=1), where that is an error.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from jobtrail.adapters.bootstrap import Jobtrail, connect
from jobtrail.adapters.kafka.codec import encode
from jobtrail.adapters.kafka.publisher import KafkaSettings
from jobtrail.domain.events import EVENT_TYPES, Event
from jobtrail.domain.job import Meta
from jobtrail.domain.retry import RetryPolicy
from jobtrail.domain.services import JobSpec
from jobtrail.processors.base import JobContext, JobView
from jobtrail.processors.engine.worker import WorkerSettings
from jobtrail.processors.registry import Registry
from jobtrail.processors.samples import AssetImageGeneration, ShotVideoGeneration
from kafka import KafkaProducer

from tests.conftest import KAFKA_REQUIRED, unavailable
from tests.kafka_broker import Broker, unique_name

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
VERIFY = NODE_DIR / "verify.mjs"

EDGE = {
    "big": 1e21,
    "neg0": -0.0,
    "y": 1e16,
    "f": 1.0,
    "small": 1e-7,
    "ключ": "значение",
    "\ue000": 1,
    "nested": [{"b": 1, "a": [2, {"c": None}]}],
    "esc": '"\\\b\f\n\r\t\u001f',
}
"""Numbers JCS writes differently from Python, non-ASCII and private-use keys, nested
arrays of objects, and every escape JSON has."""


def node_command() -> list[str]:
    """`node verify.mjs`, or a skip (a failure under CI) saying what is missing."""
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed: the Node.js verifier cannot run", KAFKA_REQUIRED)
    if not (NODE_DIR / "node_modules").is_dir():
        unavailable(
            f"{NODE_DIR}/node_modules is missing: install the verifier's pinned packages with "
            f"`npm ci --ignore-scripts --prefix {NODE_DIR}` (make test does it)",
            KAFKA_REQUIRED,
        )
    return [node, str(VERIFY)]


def run_verifier(*args: str, timeout: float = 120) -> tuple[subprocess.CompletedProcess[str], Any]:
    """Run verify.mjs; its result line (`RESULT {json}`) parsed, with the whole run."""
    done = subprocess.run(
        [*node_command(), *args], capture_output=True, text=True, timeout=timeout, cwd=NODE_DIR
    )
    results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    summary = json.loads(results[-1].removeprefix("RESULT ")) if results else None
    return done, summary


def explain(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}"


# ------------------------------------------------------------------ contract only


def test_the_schema_asyncapi_document_and_hash_vectors_pass_the_node_tools() -> None:
    done, summary = run_verifier("--contract-only", timeout=60)
    assert done.returncode == 0, explain(done)
    assert summary["ajv"] == {"strict": True, "compiled": True, "warnings": 0}
    asyncapi = summary["asyncapi"]
    assert (asyncapi["diagnostics"]["error"], asyncapi["diagnostics"]["warning"]) == (0, 0)
    assert set(asyncapi["messages"]) == set(EVENT_TYPES)
    assert asyncapi["distinctPayloads"] == asyncapi["distinctDataFieldSets"] == len(EVENT_TYPES)
    assert asyncapi["messages"]["JobRetryScheduled"]["dataFields"][-2:] == [
        "available_at",
        "delay_seconds",
    ]
    assert summary["vectors"]["present"], "hash-vectors.json is published beside the schema"
    assert summary["vectors"]["checked"] > 0
    assert summary["failures"] == 0


# --------------------------------------------------------------- the whole topic


def echo(job: JobView, ctx: JobContext) -> Any:
    """Returns its payload, so the edge values are in a result too."""
    ctx.progress(50, "échoing «edge» values")
    return {"echo": job.payload, "list": [EDGE["big"], EDGE["small"], -0.0, 2.5]}


def registry() -> Registry:
    mixed = Registry([ShotVideoGeneration(), AssetImageGeneration()])
    mixed.processor("echo")(echo)
    return mixed


MIXED = [
    JobSpec("asset_image_generation", {"duration_ms": 0}),  # completed
    JobSpec("shot_video_generation", {"duration_ms": 20}, priority=-3),  # progress, completed
    JobSpec("shot_video_generation", {"duration_ms": 0, "credits": 0}),  # user error: failed
    JobSpec("asset_image_generation", {"duration_ms": 0, "crash": True}),  # unexpected: failed
    JobSpec("asset_image_generation", {"duration_ms": 0, "fail_times": 1}),  # retried, completed
    JobSpec("asset_image_generation", {"fail_times": 9}, max_attempts=2),  # retried, failed
    JobSpec("no_such_type"),  # failed from queued, attempt 0
    JobSpec("echo", EDGE, idempotency_key="edge-ключ"),  # edge payload and result
    JobSpec("asset_image_generation", {**EDGE, "duration_ms": 0}),  # edge payload, completed
]


def mixed_run(trail: Jobtrail) -> None:
    """Every event type, edge values in payloads and results, cancellations with and without
    a reason, a correlation id."""
    trail.submit_many(MIXED * 3, Meta(actor="user:42", correlation_id="req-ü-7"))
    queued = trail.submit("asset_image_generation", {"duration_ms": 0}, delay=3600)
    trail.cancel(queued, "storyboard deleted — «edge»", Meta(actor="user:42"))
    trail.cancel(trail.submit("echo", EDGE, delay=3600), None)
    settings = WorkerSettings(
        until_empty=True, poll_seconds=0.01, progress_seconds=0.0, concurrency=4
    )
    trail.worker(settings, registry=registry()).run()


@pytest.mark.kafka
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_every_record_published_by_the_relay_passes_the_node_verifier(
    backend: str, request: pytest.FixtureRequest, kafka_broker: Broker
) -> None:
    node_command()  # before any work: a missing install says so at once
    url: str = request.getfixturevalue(f"{backend}_url")
    trail = connect(url, policy=RetryPolicy(base_delay=0.01, max_delay=0.02))
    try:
        mixed_run(trail)
        topic = unique_name(f"node-verifier-{backend}")
        trail.relay(KafkaSettings(kafka_broker.bootstrap, topic)).run(until_caught_up=True)
        log = list(trail.store.read_all())
    finally:
        trail.close()
    assert {e.type for e in log} == set(EVENT_TYPES)
    jobs = {e.job_id for e in log}

    done, summary = run_verifier(
        "--bootstrap",
        kafka_broker.bootstrap,
        "--topic",
        topic,
        "--expect-events",
        str(len(log)),
        "--expect-jobs",
        str(len(jobs)),
        *(["--session-timeout", "6000"] if not kafka_broker.controllable else []),
    )
    assert done.returncode == 0, explain(done)
    seen = summary["topic"]
    assert (seen["records"], seen["events"], seen["jobs"]) == (len(log), len(log), len(jobs))
    assert seen["by_type"] == dict(sorted(Counter(e.type for e in log).items()))
    assert seen["jcs_verified"] == len(log), "every event of a fresh run is hashed with JCS"
    assert (seen["legacy_hashes"], seen["duplicates"], seen["skipped_unknown"]) == (0, 0, 0)
    assert seen["partitions"] > 1  # jobs spread over the topic's partitions
    assert summary["failures"] == 0


# ------------------------------------------------------------ it does catch things


def tampered_records(log: list[Event]) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    """The log's records with one of each kind of damage, each on a job of its own."""
    histories: dict[str, list[Event]] = {}
    for event in log:
        histories.setdefault(event.job_id, []).append(event)
    longest = sorted(histories.values(), key=len, reverse=True)
    altered, forged, invalid = (h[1] for h in (longest[0], longest[1], longest[3]))
    # The rekeyed event goes to another partition, read before or after its job's own: it is
    # its job's last, so no later event's chain depends on when it is read.
    rekeyed = longest[2][-1]
    records = []
    for event in log:
        if event is forged:  # hashed correctly, but not chained to its predecessor
            event = replace(event, prev_hash="0" * 64).sealed()
        key, value, headers = encode(event)
        envelope = json.loads(value)
        if event is altered:  # data changed after hashing
            envelope["data"]["attempt"] = 7
        if event is invalid:  # not the schema's (nor its hash's)
            envelope["data"]["surprise"] = True
        if event is rekeyed:
            key = b"not-the-job-id"
        records.append((key, json.dumps(envelope).encode(), headers))
    return records


@pytest.mark.kafka
def test_the_node_verifier_reports_altered_forged_misplaced_and_invalid_records(
    sqlite_url: str, kafka_broker: Broker
) -> None:
    node_command()
    trail = connect(sqlite_url, policy=RetryPolicy(base_delay=0.01, max_delay=0.02))
    try:
        trail.submit_many(MIXED)
        trail.worker(WorkerSettings(until_empty=True, poll_seconds=0.01)).run()
        log = list(trail.store.read_all())
    finally:
        trail.close()
    topic = unique_name("node-verifier-tampered")
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all")
    try:
        for key, value, headers in tampered_records(log):
            producer.send(topic, key=key, value=value, headers=headers)
        producer.flush(timeout=30)
    finally:
        producer.close()

    done, summary = run_verifier("--bootstrap", kafka_broker.bootstrap, "--topic", topic)
    assert done.returncode == 1, explain(done)
    out = done.stdout
    assert out.count("but sha-256 of its JCS form is") == 2  # the altered and the invalid one
    assert out.count("broken chain, prev_hash ") == 2  # the forged event and its successor
    assert "broken chain, prev_hash " + "0" * 64 in out
    assert "key not-the-job-id is not the job id" in out
    assert "must NOT have additional properties" in out
    assert summary["topic"]["records"] == len(log)
